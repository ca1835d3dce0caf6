//! The catalog: list, search, create and edit products.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::model::{NewProduct, Product, ProductPatch};

/// Filters of `GET /products`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProductQuery {
    /// Case-insensitive text found in the name, SKU or barcode (variants' too).
    q: Option<String>,
    /// Include archived products (default false).
    include_archived: Option<bool>,
}

/// Whether `p` matches the (lowercased) search text.
fn matches(p: &Product, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    hit(&p.name)
        || hit(&p.sku)
        || p.barcode.as_deref().is_some_and(hit)
        || p.variants
            .iter()
            .any(|v| hit(&v.sku) || hit(&v.name) || v.barcode.as_deref().is_some_and(hit))
}

/// Products, archived ones left out unless asked for.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(ProductQuery),
    responses(
        (status = 200, description = "Products", body = [Product]),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(query): ApiQuery<ProductQuery>,
) -> Result<Json<Vec<Product>>, ApiError> {
    let include_archived = query.include_archived.unwrap_or(false);
    let needle = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let products = state
        .handle
        .products()?
        .into_iter()
        .filter(|p| include_archived || !p.archived)
        .filter(|p| needle.as_deref().is_none_or(|n| matches(p, n)))
        .collect();
    Ok(Json(products))
}

/// Create a product (managers and owners).
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "Duplicate SKU", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(product): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let product = state
        .handle
        .create_product(&auth.principal, product)
        .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// One product (archived ones too).
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn get_product(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(state.handle.product(id)?))
}

/// Edit or archive a product (managers and owners); fields left out stay as they are, `null`
/// clears an optional field.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The edited product", body = Product),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn update_product(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<ProductPatch>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(
        state
            .handle
            .update_product(&auth.principal, id, patch)
            .await?,
    ))
}
