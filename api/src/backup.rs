//! `GET /api/v1/backup` (API.md "Backup"): a consistent snapshot of the whole store, taken while
//! serving, streamed as a redb file (`fleetgate restore` reads it).
//!
//! A thread of its own copies one read transaction into `DATA_DIR/backup-ID.redb.part` (mode
//! 0600; [`fleetgate_storage::Store::backup_to`]), unlinks it once open, and streams it from the
//! open file, so nothing is left behind however the download ends. The event loop never
//! touches the file, and the answer starts only once the snapshot is complete (a failure is
//! still a problem+json 500, not a truncated download).

use std::io::Read as _;
use std::rc::Rc;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::channel::mpsc;
use ntex::http::body::{Body, SizedStream};
use ntex::http::header;
use ntex::util::Bytes;
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};

use super::error::{ApiError, Problem};
use super::extract::{Caller, authenticate};
use fleetgate_app::App;

/// Bytes per streamed chunk.
const CHUNK: usize = 256 << 10;

/// A whole-store backup (admin token).
#[utoipa::path(
    get, path = "/api/v1/backup", tag = "administration",
    responses(
        (status = 200, description = "A redb file: one consistent snapshot of every table", content_type = "application/octet-stream", body = String),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn backup(req: HttpRequest, app: State<Arc<App>>) -> Result<HttpResponse, ApiError> {
    if authenticate(&req, &app)? != Caller::Admin {
        return Err(ApiError::Forbidden(
            "only the instance admin token may take backups".into(),
        ));
    }
    let app = app.get_ref().clone();
    let now = app.clock.now();
    let name = format!("fleetgate-{}.redb", now.format("%Y%m%dT%H%M%SZ"));
    let (ready_tx, ready_rx) = futures::channel::oneshot::channel();
    let (mut chunks_tx, chunks_rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::Builder::new()
        .name("fleetgate-backup".into())
        .spawn(move || {
            let part = app.config.data_dir.join(format!(
                "backup-{}.redb.part",
                fleetgate_storage::ids::new_id()
            ));
            let opened = app
                .store
                .backup_to(&part, now)
                .map_err(ApiError::from)
                .and_then(|()| {
                    let file = std::fs::File::open(&part)
                        .map_err(|e| ApiError::Internal(format!("cannot reopen the backup: {e}")));
                    let _ = std::fs::remove_file(&part);
                    let file = file?;
                    let len = file
                        .metadata()
                        .map_err(|e| ApiError::Internal(format!("cannot size the backup: {e}")))?
                        .len();
                    Ok((file, len))
                });
            let mut file = match opened {
                Ok((file, len)) => {
                    if ready_tx.send(Ok(len)).is_err() {
                        return;
                    }
                    file
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0; CHUNK];
            loop {
                let chunk = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                // The client went away: stop reading.
                if futures::executor::block_on(futures::SinkExt::send(&mut chunks_tx, chunk))
                    .is_err()
                    || failed
                {
                    break;
                }
            }
        })
        .map_err(|e| ApiError::Internal(format!("cannot start the backup thread: {e}")))?;
    let len = ready_rx
        .await
        .map_err(|_| ApiError::Internal("the backup thread died".into()))??;
    let stream = chunks_rx.map(|r| r.map_err(|e| Rc::new(e) as Rc<dyn std::error::Error>));
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_message(SizedStream::new(len, stream))))
}
