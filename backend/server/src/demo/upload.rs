//! `POST /api/demo/upload`: the photo as the request body (JPEG, PNG or WebP). The server checks
//! size, type and pixel count before decoding, applies the EXIF orientation, aligns the largest
//! face and keeps only its crop and embedding (in memory). Errors are JSON with a code and a message.

use std::io::Cursor;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cemiface_app::demo_protocol::UploadReply;
use cemiface_engine::data::image_io::{self, ImageLimits};

use super::client::ClientId;
use super::DemoError;
use crate::web::client_addr::ClientAddr;
use crate::web::error::AppError;
use crate::web::state::AppState;

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
}

/// Reads the body up to the limit, refusing larger ones with 413 before reading them whole.
async fn read_limited(headers: &HeaderMap, body: Body, max: u64) -> Result<Bytes, DemoError> {
    let too_large = |n: Option<u64>| {
        DemoError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            match n {
                Some(n) => format!("the file is {}; the limit is {}", mb(n), mb(max)),
                None => format!("the file is larger than the limit of {}", mb(max)),
            },
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max) {
        return Err(too_large(Some(n)));
    }
    let bytes = axum::body::to_bytes(body, max as usize)
        .await
        .map_err(|_| too_large(None))?;
    if bytes.is_empty() {
        return Err(DemoError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_upload",
            "the upload is empty",
        ));
    }
    Ok(bytes)
}

/// Type and pixel checks on the header only, then the full decode with orientation applied.
fn decode(bytes: &[u8], max_pixels: u64) -> Result<image::RgbImage, DemoError> {
    let unprocessable = |m: String| DemoError::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", m);
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP) => {}
        _ => {
            return Err(DemoError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_an_image",
                "the file is not an image: upload a JPEG, PNG or WebP photo",
            ))
        }
    }
    let (w, h) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| unprocessable(format!("cannot read the image: {e}")))?
        .into_dimensions()
        .map_err(|e| unprocessable(format!("the image header is corrupt: {e}")))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(DemoError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_pixels",
            format!(
                "the image is {w}×{h} = {:.1} megapixels; the limit is {:.1}",
                (w as f64 * h as f64) / 1e6,
                max_pixels as f64 / 1e6
            ),
        ));
    }
    let limits = ImageLimits {
        max_pixels,
        // A 25-megapixel 8-bit RGB photo (75 MB) passes; a 16-bit RGBA one of the same size does not.
        max_decoded_bytes: 100 << 20,
        ..ImageLimits::default()
    };
    image_io::decode(bytes, "upload", limits).map_err(|e| unprocessable(e.to_string()))
}

/// Decodes (and alignments) running at once, across all requests: one per core.
fn decode_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(decode_slots_total()))
}

fn decode_slots_total() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Returns freed heap memory to the system (glibc keeps it in its arenas otherwise: after a burst
/// of 20 concurrent uploads the resident size stayed ~110 MB above its level before).
#[allow(unsafe_code)]
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's heap; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The handler.
pub async fn upload(
    State(state): State<AppState>,
    client: ClientId,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadReply>, AppError> {
    let demo = state.demo.clone();
    let model = demo
        .model()
        .map_err(|why| DemoError::new(StatusCode::SERVICE_UNAVAILABLE, "no_model", why))?;
    let per_minute = demo.settings.uploads_per_minute_per_address;
    demo.upload_counts.hit(&addr.0, per_minute).map_err(|wait| {
        DemoError::too_many(format!(
            "rate limit: {per_minute} photo uploads per minute from one network; try again in {wait} s"
        ))
    })?;
    let bytes = read_limited(&headers, body, demo.settings.max_upload_bytes).await?;
    let max_pixels = demo.settings.max_pixels;
    // At most one decode per core at a time: a burst of uploads queues here instead of holding a
    // decoded image per request in memory at once.
    let _permit = decode_slots()
        .acquire()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let face = tokio::task::spawn_blocking(move || {
        let img = decode(&bytes, max_pixels)?;
        drop(bytes);
        model.prepare(&img, "the photo").map_err(|e| match e {
            cemiface_engine::Error::NoFace { .. } => DemoError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_face",
                "no face found in the photo: use a frontal photo where the face is clearly visible",
            ),
            cemiface_engine::Error::FaceTooSmall { side, min, .. } => DemoError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "face_too_small",
                format!(
                    "the face is {side} pixels wide; it must be at least {min}: use a closer or larger photo"
                ),
            ),
            other => DemoError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("alignment failed: {other}"),
            ),
        })
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))??;
    // The last decode of a burst gives the freed decode buffers back to the system.
    if decode_slots().available_permits() + 1 == decode_slots_total() {
        release_free_memory();
    }
    drop(_permit);
    let faces_found = face.faces_found;
    let mut notes = Vec::new();
    if faces_found > 1 {
        notes.push(format!("{faces_found} faces found: the largest one is used."));
    }
    if face.cut_off > PARTIAL_FACE {
        notes.push(format!(
            "Part of the face is outside the photo ({:.0} % of its landmarks): the crop is padded and the \
             identity may be off. A photo with the whole face works better.",
            face.cut_off * 100.0
        ));
    }
    let upload_id = demo.uploads.insert(&client.0, face);
    Ok(Json(UploadReply {
        crop_url: format!("/api/demo/upload/{upload_id}/crop.png"),
        upload_id,
        faces_found,
        note: (!notes.is_empty()).then(|| notes.join(" ")),
    }))
}

/// Landmarks outside the photo above this share make the upload warn of a partial face (a
/// whole face in a tight crop can graze the edge with a point or two of its jaw line).
pub const PARTIAL_FACE: f64 = 0.05;

/// `GET /api/demo/upload/{id}/crop.png`: the aligned crop, to its owner only.
pub async fn crop(
    State(state): State<AppState>,
    client: ClientId,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let face = state.demo.uploads.get(&client.0, &id)?;
    Ok((
        [(CONTENT_TYPE, "image/png"), (CACHE_CONTROL, "private, no-store")],
        face.crop_png.clone(),
    ))
}

/// `DELETE /api/demo/upload/{id}`: forget an uploaded face now.
pub async fn forget(
    State(state): State<AppState>,
    client: ClientId,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.demo.uploads.remove(&client.0, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
