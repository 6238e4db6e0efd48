//! Who may open a WebSocket connection (`crate::pipeline::websocket`): `$connect` is the only
//! route AWS authorizes ("Controlling and managing access to a WebSocket API"), with the same
//! authorize phase as every other route (`authorize`): `AWS_IAM`, a Lambda REQUEST authorizer
//! (`CUSTOM`) and the API key, held to its usage plan as REST APIs' keys are ("Usage plans" in
//! the developer guide: WebSocket stages can be in usage plans). What it learns (the signer, the authorizer's grant) stays with
//! the connection, for every later event.

use super::body::PipelineBody;
use super::{Connection, Exchange, Failure, Pipeline};
use crate::gateway::{Decision, Snapshot};
use crate::websocket::events::{authorizer_context, ConnectionContext};

impl Pipeline {
    /// Authorize the handshake opening `cx` as its `$connect` route asks; `cx` with what was
    /// learned. The connection stays in `ex` for the access log, refused or not.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit_connection(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        mut body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        cx: ConnectionContext,
    ) -> Result<ConnectionContext, Failure> {
        ex.route = ex.serving.as_ref().and_then(|s| s.routes.iter().position(|r| &*r.key == "$connect"));
        ex.websocket = Some(Box::new(cx.clone()));
        self.authorize(snap, parts, conn, ex, d, &mut body).await?;
        // The key's usage plan: its throttle and quota count handshakes, as they count requests.
        self.usage_plan(snap, ex).await?;
        let mut cx = cx;
        cx.iam = ex.auth.iam.clone();
        cx.authorizer = authorizer_context(&ex.auth.granted);
        cx.api_key = ex.auth.api_key.clone();
        ex.websocket = Some(Box::new(cx.clone()));
        Ok(cx)
    }
}
