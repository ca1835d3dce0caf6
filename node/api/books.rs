//! The books beyond the till: suppliers, purchase orders and deliveries, shifts, refunds
//! without a receipt, open tickets, profit, closed periods, low stock.

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
use super::range::time_range;
use super::sales::{DayRangeQuery, TimeRangeQuery};
use crate::model::*;

/// `?open=true`: only what is still open.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OpenQuery {
    /// Only purchase orders waiting for goods / open tickets (default false).
    #[serde(default)]
    open: bool,
}

// --- suppliers -----------------------------------------------------------------------------

/// Every supplier, by name (staff and up).
#[utoipa::path(get, path = "/suppliers", tag = "orders",
    responses((status = 200, description = "Suppliers", body = [Supplier])),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_suppliers(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<Supplier>>, ApiError> {
    Ok(Json(state.handle.suppliers()?))
}

/// Add a supplier (managers and owners).
#[utoipa::path(post, path = "/suppliers", tag = "orders", request_body = NewSupplier,
    responses(
        (status = 201, description = "Added", body = Supplier),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn create_supplier(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(s): ApiJson<NewSupplier>,
) -> Result<(StatusCode, Json<Supplier>), ApiError> {
    let s = state.handle.put_supplier(&auth.principal, None, s).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Replace a supplier's details (managers and owners).
#[utoipa::path(put, path = "/suppliers/{id}", tag = "orders", request_body = NewSupplier,
    params(("id" = Uuid, Path, description = "Supplier id")),
    responses(
        (status = 200, description = "Saved", body = Supplier),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such supplier", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn update_supplier(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(s): ApiJson<NewSupplier>,
) -> Result<Json<Supplier>, ApiError> {
    Ok(Json(
        state
            .handle
            .put_supplier(&auth.principal, Some(id), s)
            .await?,
    ))
}

// --- purchase orders -----------------------------------------------------------------------

/// Purchase orders, newest first (staff and up: they receive deliveries).
#[utoipa::path(get, path = "/purchase-orders", tag = "orders", params(OpenQuery),
    responses((status = 200, description = "Purchase orders with their deliveries", body = [PurchaseOrder])),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_purchase_orders(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<OpenQuery>,
) -> Result<Json<Vec<PurchaseOrder>>, ApiError> {
    Ok(Json(state.handle.purchase_orders(q.open)?))
}

/// Create a draft purchase order (managers and owners).
#[utoipa::path(post, path = "/purchase-orders", tag = "orders", request_body = NewPurchaseOrder,
    responses(
        (status = 201, description = "Created as a draft", body = PurchaseOrder),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn create_purchase_order(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(po): ApiJson<NewPurchaseOrder>,
) -> Result<(StatusCode, Json<PurchaseOrder>), ApiError> {
    let po = state
        .handle
        .create_purchase_order(&auth.principal, po)
        .await?;
    Ok((StatusCode::CREATED, Json(po)))
}

/// One purchase order with its deliveries.
#[utoipa::path(get, path = "/purchase-orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Purchase order id")),
    responses(
        (status = 200, description = "The order", body = PurchaseOrder),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn get_purchase_order(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<PurchaseOrder>, ApiError> {
    Ok(Json(state.handle.purchase_order(id)?))
}

/// Change a purchase order: lines (drafts only), status (draft → sent → confirmed → received,
/// or cancelled), expected day, note (managers and owners).
#[utoipa::path(patch, path = "/purchase-orders/{id}", tag = "orders", request_body = PurchaseOrderPatch,
    params(("id" = Uuid, Path, description = "Purchase order id")),
    responses(
        (status = 200, description = "Changed", body = PurchaseOrder),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not in this status", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn update_purchase_order(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<PurchaseOrderPatch>,
) -> Result<Json<PurchaseOrder>, ApiError> {
    Ok(Json(
        state
            .handle
            .update_purchase_order(&auth.principal, id, patch)
            .await?,
    ))
}

/// Receive a (partial) delivery on a sent or confirmed order (staff and up). The same
/// delivery-note number recorded on two devices counts once.
#[utoipa::path(post, path = "/purchase-orders/{id}/deliveries", tag = "orders", request_body = NewDelivery,
    params(("id" = Uuid, Path, description = "Purchase order id")),
    responses(
        (status = 201, description = "Received: stock is in", body = Delivery),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Order not open, or note already recorded", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn receive_delivery(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(d): ApiJson<NewDelivery>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let d = state
        .handle
        .receive_delivery(&auth.principal, id, d)
        .await?;
    Ok((StatusCode::CREATED, Json(d)))
}

// --- shifts --------------------------------------------------------------------------------

/// Shifts opened in a time range, on every till (managers and owners).
#[utoipa::path(get, path = "/shifts", tag = "shifts", params(TimeRangeQuery),
    responses(
        (status = 200, description = "Shifts with their reports", body = [Shift]),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_shifts(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Json<Vec<Shift>>, ApiError> {
    let (from, to) = time_range(&state.handle, range.from.as_deref(), range.to.as_deref())?;
    Ok(Json(state.handle.shifts(&auth.principal, from, to)?))
}

/// Open a shift on this till with a float (staff and up).
#[utoipa::path(post, path = "/shifts", tag = "shifts", request_body = OpenShift,
    responses(
        (status = 201, description = "Opened", body = Shift),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "A shift is already open here", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn open_shift(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(o): ApiJson<OpenShift>,
) -> Result<(StatusCode, Json<Shift>), ApiError> {
    let s = state.handle.open_shift(&auth.principal, o).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// The shift open on this till (`null` when none).
#[utoipa::path(get, path = "/shifts/current", tag = "shifts",
    responses((status = 200, description = "The open shift, or null", body = Option<Shift>)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn current_shift(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Option<Shift>>, ApiError> {
    Ok(Json(state.handle.current_shift()?))
}

/// A pay-in or pay-out with a reason in the open shift (staff and up).
#[utoipa::path(post, path = "/shifts/current/cash", tag = "shifts", request_body = NewCashMove,
    responses(
        (status = 201, description = "Recorded", body = Shift),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "No shift open", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn cash_move(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(m): ApiJson<NewCashMove>,
) -> Result<(StatusCode, Json<Shift>), ApiError> {
    let s = state.handle.cash_move(&auth.principal, m).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Close the open shift with the counted cash (staff and up): the shift report.
#[utoipa::path(post, path = "/shifts/current/close", tag = "shifts", request_body = CloseShift,
    responses(
        (status = 200, description = "Closed: expected, counted, difference", body = Shift),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "No shift open", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn close_shift(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(c): ApiJson<CloseShift>,
) -> Result<Json<Shift>, ApiError> {
    Ok(Json(state.handle.close_shift(&auth.principal, c).await?))
}

/// One shift's report.
#[utoipa::path(get, path = "/shifts/{id}", tag = "shifts",
    params(("id" = Uuid, Path, description = "Shift id")),
    responses(
        (status = 200, description = "The shift", body = Shift),
        (status = 404, description = "No such shift", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn get_shift(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Shift>, ApiError> {
    Ok(Json(state.handle.shift(id)?))
}

// --- refunds -------------------------------------------------------------------------------

/// Refund goods without the original sale (managers and owners).
#[utoipa::path(post, path = "/refunds", tag = "sales", request_body = NewRefund,
    responses(
        (status = 201, description = "Refunded", body = Refund),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn create_refund(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(r): ApiJson<NewRefund>,
) -> Result<(StatusCode, Json<Refund>), ApiError> {
    let r = state.handle.refund(&auth.principal, r).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Refunds without a receipt in a time range (managers and owners).
#[utoipa::path(get, path = "/refunds", tag = "sales", params(TimeRangeQuery),
    responses(
        (status = 200, description = "Refunds", body = [Refund]),
        (status = 400, description = "Bad range", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_refunds(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Json<Vec<Refund>>, ApiError> {
    let (from, to) = time_range(&state.handle, range.from.as_deref(), range.to.as_deref())?;
    Ok(Json(state.handle.refunds(&auth.principal, from, to)?))
}

// --- tickets -------------------------------------------------------------------------------

/// Open tickets (`?open=true`: parked ones and those paid twice), most recent first.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(OpenQuery),
    responses((status = 200, description = "Tickets", body = [Ticket])),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_tickets(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<OpenQuery>,
) -> Result<Json<Vec<Ticket>>, ApiError> {
    Ok(Json(state.handle.tickets(q.open)?))
}

/// Park a cart as a ticket any till can pick up (staff and up). Pay it with `POST /sales`
/// and its `ticket_id`.
#[utoipa::path(post, path = "/tickets", tag = "tickets", request_body = ParkTicket,
    responses(
        (status = 201, description = "Parked", body = Ticket),
        (status = 400, description = "Bad input", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn park_ticket(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(t): ApiJson<ParkTicket>,
) -> Result<(StatusCode, Json<Ticket>), ApiError> {
    let t = state.handle.park_ticket(&auth.principal, None, t).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// One ticket.
#[utoipa::path(get, path = "/tickets/{id}", tag = "tickets",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        (status = 404, description = "No such ticket", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn get_ticket(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Ticket>, ApiError> {
    Ok(Json(state.handle.ticket(id)?))
}

/// Replace a parked ticket's content (staff and up).
#[utoipa::path(put, path = "/tickets/{id}", tag = "tickets", request_body = ParkTicket,
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "Updated", body = Ticket),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "Already paid or discarded", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn update_ticket(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(t): ApiJson<ParkTicket>,
) -> Result<Json<Ticket>, ApiError> {
    Ok(Json(
        state
            .handle
            .park_ticket(&auth.principal, Some(id), t)
            .await?,
    ))
}

/// Throw a parked ticket away (staff and up).
#[utoipa::path(post, path = "/tickets/{id}/discard", tag = "tickets",
    params(("id" = Uuid, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "Discarded", body = Ticket),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "Already paid or discarded", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn discard_ticket(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Ticket>, ApiError> {
    Ok(Json(
        state.handle.discard_ticket(&auth.principal, id).await?,
    ))
}

// --- profit, periods, low stock ------------------------------------------------------------

/// Profit per shop-local day: revenue without tax, FIFO cost, shrinkage; closed days frozen,
/// later changes to them on the first open day (managers and owners).
#[utoipa::path(get, path = "/reports/profit", tag = "reports", params(DayRangeQuery),
    responses(
        (status = 200, description = "One entry per day with activity", body = [DayProfit]),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn profit_days(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(days): ApiQuery<DayRangeQuery>,
) -> Result<Json<Vec<DayProfit>>, ApiError> {
    let (from, to) = days.days(&state.handle)?;
    Ok(Json(state.handle.profit_days(
        &auth.principal,
        &from,
        &to,
    )?))
}

/// Profit per product over a range of days, most profitable first (managers and owners).
#[utoipa::path(get, path = "/reports/profit/products", tag = "reports", params(DayRangeQuery),
    responses(
        (status = 200, description = "One entry per product sold", body = [ProductProfit]),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn profit_products(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(days): ApiQuery<DayRangeQuery>,
) -> Result<Json<Vec<ProductProfit>>, ApiError> {
    let (from, to) = days.days(&state.handle)?;
    Ok(Json(state.handle.profit_by_product(
        &auth.principal,
        &from,
        &to,
    )?))
}

/// The profit of one sale (managers and owners).
#[utoipa::path(get, path = "/sales/{id}/profit", tag = "reports",
    params(("id" = Uuid, Path, description = "Sale id")),
    responses(
        (status = 200, description = "Revenue, FIFO cost and profit", body = SaleProfit),
        (status = 404, description = "No such sale", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn sale_profit(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SaleProfit>, ApiError> {
    Ok(Json(state.handle.sale_profit(&auth.principal, id)?))
}

/// Products at or below their reorder level, with what is on open purchase orders.
#[utoipa::path(get, path = "/reports/low-stock", tag = "reports",
    responses((status = 200, description = "Low stock, most urgent first", body = [LowStock])),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn low_stock(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<LowStock>>, ApiError> {
    Ok(Json(state.handle.low_stock()?))
}

/// Closed periods, oldest first (managers and owners).
#[utoipa::path(get, path = "/periods", tag = "reports",
    responses((status = 200, description = "Closed periods with their frozen days", body = [PeriodClose])),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn list_periods(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<PeriodClose>>, ApiError> {
    Ok(Json(state.handle.periods(&auth.principal)?))
}

/// Close the books through a day (owners): the period's figures freeze.
#[utoipa::path(post, path = "/periods", tag = "reports", request_body = NewPeriodClose,
    responses(
        (status = 201, description = "Closed", body = PeriodClose),
        (status = 400, description = "Bad day (today or later, or not a day)", body = ErrorBody),
        (status = 403, description = "Owners only", body = ErrorBody),
        (status = 409, description = "Already closed through a later day", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])))]
pub(crate) async fn close_period(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(c): ApiJson<NewPeriodClose>,
) -> Result<(StatusCode, Json<PeriodClose>), ApiError> {
    let c = state.handle.close_period(&auth.principal, c).await?;
    Ok((StatusCode::CREATED, Json(c)))
}
