//! The HTTP side of the simulator: `tiny_http` worker threads that route
//! `/bot<token>/<method>`, read parameters from the query, a JSON body or a form body, consult
//! the injected faults, run the method and answer in Telegram's JSON shape.
//!
//! Nothing a client sends can panic a worker: every malformed request is a 4xx JSON answer.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Request, Response, Server};

use super::api_error::ApiError;
use super::calls::RecordedCall;
use super::delivery;
use super::faults::{self, FaultOutcome};
use super::legacy;
use super::methods::{self, Effects};
use super::params::Params;
use super::world::{Shared, World};

/// Largest request body the simulator reads (Telegram accepts more for uploads, which the
/// simulator does not support).
const MAX_BODY: usize = 1 << 20;
/// Telegram caps the long-poll timeout at 50 seconds.
const MAX_POLL: i64 = 50;

/// One worker: takes requests until the simulator stops.
pub(crate) fn worker(shared: Arc<Shared>, server: Arc<Server>) {
    loop {
        match server.recv() {
            Ok(req) => handle(&shared, req),
            Err(_) if shared.is_stopped() => return,
            // A broken connection is that connection's problem only.
            Err(_) => continue,
        }
        if shared.is_stopped() {
            return;
        }
    }
}

fn respond(req: Request, status: u16, body: Vec<u8>) {
    let mut response = Response::from_data(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        response.add_header(h);
    }
    // The client may have gone away; nothing to do about it.
    let _ = req.respond(response);
}

fn answer(result: &Result<Value, ApiError>) -> (u16, Vec<u8>) {
    match result {
        Ok(v) => (
            200,
            json!({"ok": true, "result": v}).to_string().into_bytes(),
        ),
        Err(e) => (e.code, e.to_json().to_string().into_bytes()),
    }
}

fn record(shared: &Shared, world: &mut World, method: &str, params: &Params, status: u16) {
    let at = shared.started.elapsed();
    record_at(shared, world, method, params, status, at);
}

/// [`record`] with the time the call arrived (a delayed call counts when it came in, as
/// Telegram's budgets count calls).
fn record_at(
    shared: &Shared,
    world: &mut World,
    method: &str,
    params: &Params,
    status: u16,
    at: Duration,
) {
    if world.record_calls {
        world.calls.push(RecordedCall {
            method: method.to_owned(),
            params: params.to_value(),
            status,
            at,
            answered: shared.started.elapsed(),
        });
        shared.called.notify_all();
    }
}

/// Constant-time comparison, so response timing does not leak how much of a token matched.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Reads the parameters of a call, or the error to answer with.
fn read_params(req: &mut Request, query: &str) -> Result<Params, ApiError> {
    let mut params = Params::default();
    params.merge_form(query.as_bytes());
    let too_large = ApiError {
        code: 413,
        description: "Request Entity Too Large".to_owned(),
        retry_after: None,
        migrate_to_chat_id: None,
    };
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_large);
    }
    let content_type = header(req, "Content-Type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| ApiError::bad_request("can't read request body"))?;
    if body.len() > MAX_BODY {
        return Err(too_large);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        params.merge_form(&body);
    } else if content_type.starts_with("multipart/") {
        return Err(ApiError::bad_request(
            "multipart requests are not supported by the simulator",
        ));
    } else {
        params.merge_json(&body)?;
    }
    Ok(params)
}

fn handle(shared: &Arc<Shared>, mut req: Request) {
    let arrived = shared.started.elapsed();
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    if let Some(method) = path.strip_prefix("/mtproto/") {
        let method = method.to_owned();
        return super::directory::handle_http(shared, req, &method);
    }
    let Some((token, method)) = path.strip_prefix("/bot").and_then(|r| r.split_once('/')) else {
        let (status, body) = answer(&Err(ApiError::not_found()));
        return respond(req, status, body);
    };
    if !same_token(token, &shared.token) {
        let (status, body) = answer(&Err(ApiError::unauthorized()));
        return respond(req, status, body);
    }
    let Some(method) = methods::canonical(method) else {
        let (status, body) = answer(&Err(ApiError::not_found()));
        return respond(req, status, body);
    };
    let params = match read_params(&mut req, query) {
        Ok(p) => p,
        Err(e) => {
            let mut w = shared.lock();
            record(shared, &mut w, method, &Params::default(), e.code);
            drop(w);
            let (status, body) = answer(&Err(e));
            return respond(req, status, body);
        }
    };
    let outcome = faults::take(&mut shared.lock().faults, method);
    match outcome {
        FaultOutcome::Proceed => {}
        FaultOutcome::Delay(d) => {
            // The delay runs on its own thread, so that held calls (a timeout storm) do not
            // take every worker and hold up the calls behind them (which would then be
            // answered, and counted, in a burst when the workers free up).
            let shared = Arc::clone(shared);
            std::thread::spawn(move || {
                std::thread::sleep(d);
                proceed(&shared, req, method, params, arrived);
            });
            return;
        }
        FaultOutcome::Fail(e) => {
            record(shared, &mut shared.lock(), method, &params, e.code);
            let (status, body) = answer(&Err(e));
            return respond(req, status, body);
        }
        FaultOutcome::Malformed => {
            record(shared, &mut shared.lock(), method, &params, 200);
            return respond(req, 200, b"<html>502 Bad Gateway</html>{\"ok\":tr".to_vec());
        }
        FaultOutcome::Answer(v) => {
            record(shared, &mut shared.lock(), method, &params, 200);
            let (status, body) = answer(&Ok(v));
            return respond(req, status, body);
        }
    }
    proceed(shared, req, method, params, arrived);
}

/// Answers a call whose faults were applied: `getUpdates`, or the method itself.
fn proceed(
    shared: &Arc<Shared>,
    req: Request,
    method: &'static str,
    params: Params,
    arrived: Duration,
) {
    if method == "getUpdates" {
        return get_updates(shared, req, params);
    }
    let mut effects = Effects::default();
    let result = {
        let mut w = shared.lock();
        let mut result = methods::dispatch(&mut w, method, &params, &mut effects);
        if w.legacy_shape {
            if let Ok(v) = result.as_mut() {
                legacy::strip(v);
            }
        }
        let status = result.as_ref().map_or_else(|e| e.code, |_| 200);
        record_at(shared, &mut w, method, &params, status, arrived);
        result
    };
    shared.changed.notify_all();
    if let Some(change) = effects.webhook {
        delivery::start(Arc::clone(shared), change);
    }
    let (status, body) = answer(&result);
    respond(req, status, body);
}

/// `getUpdates`: answers at once when updates are waiting or `timeout` is 0, otherwise
/// long-polls on its own thread so a waiting bot does not hold a worker.
fn get_updates(shared: &Arc<Shared>, req: Request, params: Params) {
    let timeout = match params.int("timeout") {
        Ok(t) => t.unwrap_or(0).clamp(0, MAX_POLL),
        Err(e) => {
            record(shared, &mut shared.lock(), "getUpdates", &params, e.code);
            let (status, body) = answer(&Err(e));
            return respond(req, status, body);
        }
    };
    let (first, generation) = {
        let mut w = shared.lock();
        w.poll_generation += 1;
        let generation = w.poll_generation;
        (w.poll(&params, timeout > 0), generation)
    };
    // A newer poll ends an older one with 409, as Telegram does.
    shared.changed.notify_all();
    match first {
        Ok(None) => {}
        done => {
            record(
                shared,
                &mut shared.lock(),
                "getUpdates",
                &params,
                done.as_ref().map_or_else(|e| e.code, |_| 200),
            );
            let done = done.map(|v| v.unwrap_or(Value::Array(Vec::new())));
            let (status, body) = answer(&done);
            return respond(req, status, body);
        }
    }
    shared.lock().waiting_polls += 1;
    let shared = Arc::clone(shared);
    let counter = Arc::clone(&shared);
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
    let spawned = std::thread::Builder::new()
        .name("sim-long-poll".into())
        .spawn(move || {
            let result = long_poll(&shared, &params, generation, deadline);
            shared.lock().waiting_polls -= 1;
            record(
                &shared,
                &mut shared.lock(),
                "getUpdates",
                &params,
                result.as_ref().map_or_else(|e| e.code, |_| 200),
            );
            let (status, body) = answer(&result);
            respond(req, status, body);
        });
    if spawned.is_err() {
        counter.lock().waiting_polls -= 1;
        log::warn!("simulated Telegram: could not start a long-poll thread");
    }
}

fn long_poll(
    shared: &Shared,
    params: &Params,
    generation: u64,
    deadline: Instant,
) -> Result<Value, ApiError> {
    let mut w = shared.lock();
    loop {
        if w.stopped {
            return Ok(Value::Array(Vec::new()));
        }
        if w.poll_generation != generation {
            return Err(ApiError::conflict(
                "terminated by other getUpdates request; make sure that only one bot instance is running",
            ));
        }
        if let Some(v) = w.poll(params, true)? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Value::Array(Vec::new()));
        }
        w = match shared.changed.wait_timeout(w, deadline - now) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}
