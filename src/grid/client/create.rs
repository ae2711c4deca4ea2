//! Creating and cancelling invitations at Grid: `POST /invitations` and
//! `POST /invitations/{invitationCode}/cancel` of the Grid API, answered
//! with the `UmaInvitation` object a fetch reads.

use reqwest::Method;
use serde_json::Value;

use super::{GridClient, GridFetchError};
use crate::upstream::excerpt;

impl GridClient {
    /// Asks Grid to create an invitation from `body` (`inviterUma`,
    /// `amountToSend`?, `expiresAt`?, `firstName`?); answers it.
    ///
    /// # Errors
    /// A transport error, a non-2xx status (5xx: the outcome is unknown),
    /// or an answer that is not an invitation with a code.
    pub async fn create_invitation(&self, body: &Value) -> Result<Value, GridFetchError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| GridFetchError::Config("GRID_API_URL cannot take a path.".into()))?
            .pop_if_empty()
            .push("invitations");
        self.invitation_answer(Method::POST, url, Some(body)).await
    }

    /// Asks Grid to cancel the invitation with `code` (Grid cancels only a
    /// `PENDING` one: another answers 4xx); answers it.
    ///
    /// # Errors
    /// As [`create_invitation`](Self::create_invitation).
    pub async fn cancel_invitation(&self, code: &str) -> Result<Value, GridFetchError> {
        let mut url = self.invitation_url(code)?;
        url.path_segments_mut()
            .map_err(|()| GridFetchError::Config("GRID_API_URL cannot take a path.".into()))?
            .push("cancel");
        self.invitation_answer(Method::POST, url, None).await
    }

    async fn invitation_answer(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Value, GridFetchError> {
        let response = self.upstream.send(method, &url, body).await?;
        let status = response.status().as_u16();
        let bytes = self.upstream.read_capped(&url, response).await?;
        let answer = self.upstream.json_answer(status, &bytes)?;
        match answer.get("code") {
            Some(Value::String(code)) if !code.is_empty() => Ok(answer),
            _ => Err(GridFetchError::Malformed(
                self.upstream.scrub(&format!("not an invitation with a code: {}", excerpt(&answer.to_string()))),
            )),
        }
    }
}
