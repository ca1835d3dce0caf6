//! `tillmesh relay enroll`: the relay joins a shop, into a directory of its own.

use std::path::Path;

use super::RELAY_KEY_FILE;
use super::replicas::{relay_key, shops_dir};
use crate::error::{Error, Result};

/// `tillmesh relay enroll`: joins the shop of `invite` (an invite with role `relay`) as this
/// relay, into `DATA_DIR/shops/<shop id>`. The relay may be running: it opens the new shop
/// within [`RESCAN`](super::RESCAN).
pub async fn enroll(data_dir: &Path, invite: &str) -> Result<crate::mesh::Joined> {
    crate::docs::admission::Ticket::parse(invite)?;
    relay_key(data_dir)?;
    let dir = shops_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::store(format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".enrolling-{}",
        hex::encode(crate::identity::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::store(format!("cannot create {}", tmp.display()), e))?;
    let joined = async {
        std::fs::copy(
            data_dir.join(RELAY_KEY_FILE),
            tmp.join(crate::node::DEVICE_KEY_FILE),
        )
        .map_err(|e| Error::store("cannot copy the relay key", e))?;
        let joined = crate::node::join(
            &tmp,
            invite,
            crate::mesh::JoinOptions::role(crate::model::DeviceRole::Relay),
        )
        .await?;
        let target = dir.join(joined.shop_id.to_string());
        if target.exists() {
            return Err(Error::Conflict(format!(
                "this relay already serves shop {}",
                joined.shop_id
            )));
        }
        std::fs::rename(&tmp, &target)
            .map_err(|e| Error::store("cannot move the new shop in place", e))?;
        Ok(joined)
    }
    .await;
    if joined.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    joined
}
