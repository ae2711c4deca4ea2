//! `invite` and `cancel`: creating and cancelling an invitation at its
//! source from the command line, as `POST /v1/invitations` and its cancel
//! route do, through the same checks and records. They work beside a
//! running service, like `refetch`.

use crate::config::{DbArgs, ReconcileArgs};

/// What `invite` was asked, before the checks every creation goes through.
#[derive(Debug, Clone)]
pub struct InviteArgs {
    pub source: String,
    pub inviter_uma: String,
    /// `VALUE:CURRENCY` in the currency's smallest unit, e.g. `500:USD`.
    pub amount: Option<String>,
    pub expires_at: Option<String>,
    pub first_name: Option<String>,
}

impl InviteArgs {
    /// The request body the HTTP route would receive.
    ///
    /// # Errors
    /// When `--amount` is not `VALUE:CURRENCY` with an integer value.
    fn body(&self) -> anyhow::Result<serde_json::Value> {
        let mut body = serde_json::json!({"source": self.source, "inviter_uma": self.inviter_uma});
        if let Some(amount) = &self.amount {
            let (value, currency) = amount
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--amount must be VALUE:CURRENCY in the smallest unit, e.g. 500:USD"))?;
            let value: i64 = value.trim().parse().map_err(|_| {
                anyhow::anyhow!("--amount {amount:?}: the value must be an integer in the currency's smallest unit")
            })?;
            body["amount"] = serde_json::json!({"value": value, "currency": currency.trim()});
        }
        if let Some(t) = &self.expires_at {
            body["expires_at"] = t.clone().into();
        }
        if let Some(n) = &self.first_name {
            body["first_name"] = n.clone().into();
        }
        Ok(body)
    }
}

/// `invite`: creates the invitation and prints its projection as JSON.
///
/// # Errors
/// A sentence: bad input (nothing sent or stored), a refusal or an unknown
/// outcome (recorded), no credentials, or a ledger that cannot be written.
pub async fn invite(db: &DbArgs, args: &ReconcileArgs, invite: &InviteArgs) -> anyhow::Result<String> {
    let new =
        crate::reconcile::register::parse_create(&invite.body()?, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
    with_reconciler(db, args, |r| async move {
        let state = r.create_invitation(new).await?;
        Ok(serde_json::to_string_pretty(&crate::projection::view::view(&state))?)
    })
    .await
}

/// `cancel <invitation>`: cancels it at its source and prints its
/// projection as JSON.
///
/// # Errors
/// As [`invite`], and when the invitation is unknown.
pub async fn cancel(db: &DbArgs, args: &ReconcileArgs, invitation: &str) -> anyhow::Result<String> {
    let wanted = invitation.to_owned();
    with_reconciler(db, args, |r| async move {
        let conn = crate::projection::store::open_read_only(&db.local())?;
        let state = crate::projection::query::find(&conn, &wanted)?
            .ok_or_else(|| anyhow::anyhow!("no invitation with id or code {wanted:?}"))?;
        drop(conn);
        let state = r.cancel_invitation(&state.invitation_id).await?;
        Ok(serde_json::to_string_pretty(&crate::projection::view::view(&state))?)
    })
    .await
}

/// Runs `f` with a reconciler on the ledger, closing the ledger after.
async fn with_reconciler<F, Fut>(db: &DbArgs, args: &ReconcileArgs, f: F) -> anyhow::Result<String>
where
    F: FnOnce(crate::service::LiveReconciler) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    super::commands::ensure_ledger(db)?;
    let config = args.validate()?;
    let ledger = crate::service::LiveLedger::open_caught_up(db).await?;
    let done = async {
        let reconciler =
            crate::service::build_reconciler(&db.local(), ledger.ledger.clone(), config, Default::default())?
                .following(ledger.projected.clone(), ledger.health.clone());
        f(reconciler).await
    }
    .await;
    ledger.close().await?;
    done
}
