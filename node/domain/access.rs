//! Who may do what: the shop's role rules in one table.
//!
//! Every read and command that needs a role names an [`Access`] and calls [`require`]; the
//! [`NodeHandle`](crate::NodeHandle) does so before it reads or writes anything, so the web
//! API, the CLI and an embedder calling the handle directly meet the same rule (the API maps a
//! session to a [`Principal`] and decides nothing itself).
//!
//! A few rules depend on more than the role (whom a manager may add or invite, whose sale
//! staff may void and for how long, which documents are served); they live here too, as
//! functions.
//!
//! Not here: the rules that judge *signed changes* (whether a change's signer could make it),
//! which every peer applies to what it receives — those are `docs::trust` and the projection.

use crate::error::{Error, Result};
use crate::model::{DeviceRole, Principal, Role};

/// A guarded read or action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The daily totals and the sales, sellers, staff, tax, payments, inventory and movement
    /// reports.
    Reports,
    /// The list of shifts over a time range.
    Shifts,
    /// The list of refunds over a time range.
    Refunds,
    /// Profit per day, per product and per sale, and the closed periods.
    Profit,
    /// The CSV exports (products, sales, sale lines, movements, stock, profit, shifts).
    Export,
    /// The list of stored documents and their bytes (see [`document_served`] for which).
    Documents,
    /// The `members` document's bytes (it holds the staff's PIN hashes).
    MembersDocument,
    /// The audit trail and its export.
    Audit,
    /// A backup of the node.
    Backup,
    /// Dismissing an alert.
    DismissAlert,
    /// Importing products from CSV.
    ImportProducts,
    /// Creating a product.
    CreateProduct,
    /// Editing a product.
    EditProduct,
    /// Removing stock (waste, theft, breakage).
    RemoveStock,
    /// Adjusting stock to a count.
    AdjustStock,
    /// A return.
    Return,
    /// A refund without a sale.
    Refund,
    /// Adding, editing and archiving suppliers.
    Suppliers,
    /// Creating a purchase order.
    CreatePurchaseOrder,
    /// Changing a purchase order.
    ChangePurchaseOrder,
    /// Closing an accounting period.
    ClosePeriod,
    /// Changing the shop's settings.
    Settings,
    /// Listing the shop's people.
    People,
    /// Adding people (see [`require_add_person`] for whom).
    AddPeople,
    /// Revoking a person or a device.
    Revoke,
    /// Rotating the gossip key.
    RotateGossipKey,
    /// Inviting a device (see [`require_invite`] for which).
    InviteDevice,
    /// Dialing a peer from a session.
    AddPeer,
    /// Reviewing the sales a revoked till made after its revocation.
    ReviewRevokedSales,
    /// Accepting such sales into the books.
    AcceptRevokedSales,
    /// Dismissing such sales.
    DismissRevokedSales,
}

/// How a refusal reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// "only managers and owners may do this" (the sentence the API has always answered).
    ManagersAndOwners,
    /// "<what> needs a <role> (you are logged in as <role>)".
    Needs,
}

/// One row of the table: the least role, what it is called in a refusal, how it is refused.
struct Rule {
    least: Role,
    what: &'static str,
    refusal: Refusal,
}

impl Access {
    /// The rule of `self`: the one table.
    const fn rule(self) -> Rule {
        use Access::*;
        use Refusal::{ManagersAndOwners as Api, Needs};
        use Role::{Manager, Owner};
        let (least, what, refusal) = match self {
            Reports => (Manager, "reading reports", Api),
            Shifts => (Manager, "listing shifts", Api),
            Refunds => (Manager, "listing refunds", Api),
            Profit => (Manager, "reading profit", Api),
            Export => (Manager, "exporting", Api),
            Documents => (Manager, "reading documents", Api),
            MembersDocument => (Owner, "reading the members document", Needs),
            Audit => (Manager, "reading the audit trail", Api),
            Backup => (Manager, "making a backup", Api),
            DismissAlert => (Manager, "dismissing an alert", Api),
            ImportProducts => (Manager, "importing products", Api),
            CreateProduct => (Manager, "creating a product", Needs),
            EditProduct => (Manager, "editing a product", Needs),
            RemoveStock => (Manager, "removing stock", Needs),
            AdjustStock => (Manager, "adjusting stock", Needs),
            Return => (Manager, "a return", Needs),
            Refund => (Manager, "a refund", Needs),
            Suppliers => (Manager, "editing suppliers", Needs),
            CreatePurchaseOrder => (Manager, "creating a purchase order", Needs),
            ChangePurchaseOrder => (Manager, "changing a purchase order", Needs),
            ClosePeriod => (Owner, "closing a period", Needs),
            Settings => (Owner, "changing settings", Needs),
            People => (Manager, "listing people", Needs),
            AddPeople => (Manager, "adding people", Needs),
            Revoke => (Owner, "revoking", Needs),
            RotateGossipKey => (Owner, "rotating the gossip key", Needs),
            InviteDevice => (Manager, "inviting a device", Needs),
            AddPeer => (Manager, "adding a peer", Needs),
            ReviewRevokedSales => (Owner, "reviewing a revoked till's sales", Needs),
            AcceptRevokedSales => (Owner, "accepting a revoked till's sales", Needs),
            DismissRevokedSales => (Owner, "dismissing a revoked till's sales", Needs),
        };
        Rule {
            least,
            what,
            refusal,
        }
    }

    /// The least role that may do `self`.
    pub const fn least_role(self) -> Role {
        self.rule().least
    }
}

/// Refuses ([`Error::Forbidden`]) unless `by` may do `what`.
pub fn require(by: &Principal, what: Access) -> Result<()> {
    let rule = what.rule();
    if by.role >= rule.least {
        return Ok(());
    }
    Err(Error::Forbidden(match rule.refusal {
        Refusal::ManagersAndOwners => "only managers and owners may do this".into(),
        Refusal::Needs => format!(
            "{} needs a {} (you are logged in as {})",
            rule.what,
            rule.least.as_str(),
            by.role.as_str()
        ),
    }))
}

/// Whether `by` may do `what` (for views that hide what a person may not use).
pub fn allows(by: &Principal, what: Access) -> bool {
    by.role >= what.rule().least
}

/// Adding a person of `role`: owners add anyone, managers staff only.
pub fn require_add_person(by: &Principal, role: Role) -> Result<()> {
    require(by, Access::AddPeople)?;
    if by.role == Role::Manager && role != Role::Staff {
        return Err(Error::Forbidden("managers may add staff only".into()));
    }
    Ok(())
}

/// Inviting a device of `role`: owners invite any device, managers tills only.
pub fn require_invite(by: &Principal, role: DeviceRole) -> Result<()> {
    require(by, Access::InviteDevice)?;
    if by.role == Role::Manager && role != DeviceRole::Till {
        return Err(Error::Forbidden("managers may invite tills only".into()));
    }
    Ok(())
}

/// How long staff may void their own sale.
pub const STAFF_VOID_WINDOW_MS: i64 = 30 * 60 * 1000;

/// Whether `by` may void any sale at any time (managers, owners) rather than only their own
/// recent ones on the till that made them (staff: [`require_void`]).
pub fn voids_any_sale(by: &Principal) -> bool {
    by.role >= Role::Manager
}

/// Voiding a sale made by `sale_person` (`made_here`: on this device) `age_ms` ago: managers and
/// owners void any; staff only their own sale, on the till that made it, within
/// [`STAFF_VOID_WINDOW_MS`].
pub fn require_void(
    by: &Principal,
    sale_person: Option<uuid::Uuid>,
    made_here: bool,
    age_ms: i64,
) -> Result<()> {
    if voids_any_sale(by) {
        return Ok(());
    }
    if sale_person != Some(by.person_id) || !made_here {
        return Err(Error::Forbidden(
            "staff may void only their own sales on this till".into(),
        ));
    }
    if age_ms > STAFF_VOID_WINDOW_MS {
        return Err(Error::Forbidden(
            "staff may void a sale only within 30 minutes; ask a manager".into(),
        ));
    }
    Ok(())
}

/// The document that is never served: it holds the sealed keys.
const VAULT: &str = "vault";
/// The document only owners may read: it holds the staff's PIN hashes and admission records.
const MEMBERS: &str = "members";

/// Which stored document `by` is served (listed, or downloaded as bytes): never `vault` (as
/// if there were none: [`Error::NotFound`]); `members` to owners only; every other one to
/// managers and owners. `id` is the document's id, `kind` its kind if known (`""` judges by
/// the id alone, `kind/…` included).
pub fn require_document(by: &Principal, id: &str, kind: &str) -> Result<()> {
    require(by, Access::Documents)?;
    let is = |name: &str| id == name || id.starts_with(&format!("{name}/")) || kind == name;
    if is(VAULT) {
        return Err(Error::NotFound(format!("no document `{id}`")));
    }
    if is(MEMBERS) {
        require(by, Access::MembersDocument)?;
    }
    Ok(())
}

/// Whether `by` is served document `id` of `kind` (see [`require_document`]).
pub fn document_served(by: &Principal, id: &str, kind: &str) -> bool {
    require_document(by, id, kind).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_role(role: Role) -> Principal {
        Principal {
            person_id: uuid::Uuid::nil(),
            name: "P".into(),
            username: "p".into(),
            role,
            key: None,
        }
    }

    #[test]
    fn staff_is_refused_what_needs_a_manager_with_the_api_sentence() {
        let staff = as_role(Role::Staff);
        let manager = as_role(Role::Manager);
        for what in [
            Access::Reports,
            Access::Export,
            Access::Audit,
            Access::Backup,
        ] {
            match require(&staff, what) {
                Err(Error::Forbidden(m)) => assert_eq!(m, "only managers and owners may do this"),
                other => panic!("{what:?}: {other:?}"),
            }
            assert!(require(&manager, what).is_ok());
        }
        match require(&manager, Access::Settings) {
            Err(Error::Forbidden(m)) => {
                assert_eq!(
                    m,
                    "changing settings needs a owner (you are logged in as manager)"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn staff_void_only_their_own_recent_sales_made_on_this_till() {
        let staff = as_role(Role::Staff);
        let me = Some(staff.person_id);
        let other = Some(uuid::Uuid::from_u128(7));
        assert!(require_void(&staff, me, true, STAFF_VOID_WINDOW_MS).is_ok());
        for (person, here, age) in [
            (other, true, 0),
            (None, true, 0),
            (me, false, 0),
            (me, true, STAFF_VOID_WINDOW_MS + 1),
        ] {
            assert!(
                matches!(
                    require_void(&staff, person, here, age),
                    Err(Error::Forbidden(_))
                ),
                "{person:?} {here} {age}"
            );
        }
        assert!(require_void(&as_role(Role::Manager), other, false, i64::MAX).is_ok());
    }

    #[test]
    fn documents_vault_never_members_owners_only() {
        let manager = as_role(Role::Manager);
        let owner = as_role(Role::Owner);
        assert!(!document_served(&owner, "vault", "vault"));
        assert!(!document_served(&manager, "members", "members"));
        assert!(document_served(&owner, "members", "members"));
        assert!(document_served(&manager, "catalog", "catalog"));
        assert!(!document_served(
            &as_role(Role::Staff),
            "catalog",
            "catalog"
        ));
    }
}
