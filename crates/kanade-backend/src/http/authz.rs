//! The HTTP side of authentication: the per-route layer that resolves and checks the caller
//! (`crate::auth` decides; this module speaks axum), and the extractors handlers take.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::auth::{Access, Auth, AuthError, Caller, authenticate, refusal};
use crate::db::Db;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(why) => {
                ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", why)
            }
            AuthError::Db(e) => e.into(),
        }
    }
}

/// The per-route layer: authenticate unless public, check the role, hand the caller on.
pub async fn authorize(
    State((auth, db, access)): State<(Auth, Db, Access)>,
    req: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match authenticate(&auth, &db, &parts).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(why) = refusal(&caller, access) {
        return ApiError::new(axum::http::StatusCode::FORBIDDEN, "forbidden", why).into_response();
    }
    let name = super::CallerName(caller.name.clone());
    parts.extensions.insert(caller);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    response.extensions_mut().insert(name);
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| crate::auth::unauthorized("this route needs a signed-in caller").into())
    }
}

/// The client address of a request (when served with connect info; see [`Auth::source`]), for
/// public routes.
pub struct Peer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Peer
where
    Auth: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(<Auth as axum::extract::FromRef<S>>::from_ref(state).source(parts)))
    }
}
