//! Mosquitto 2.0's plugin interface, version 5 (mosquitto_plugin.h, mosquitto_broker.h of
//! 2.0.11): the exported entry points, the event structs mirrored with `#[repr(C)]`, and the
//! broker functions we call, which stay undefined in the library and resolve from the
//! `mosquitto` executable when it loads us. This is the crate's only unsafe code; everything
//! it receives is copied into Rust values before [`Plugin`] decides.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::plugin::{Access, Plugin, log};

const MOSQ_ERR_SUCCESS: c_int = 0;
const MOSQ_ERR_AUTH: c_int = 11;
const MOSQ_ERR_ACL_DENIED: c_int = 12;
const MOSQ_ERR_UNKNOWN: c_int = 13;

const MOSQ_EVT_ACL_CHECK: c_int = 2;
const MOSQ_EVT_BASIC_AUTH: c_int = 3;
const MOSQ_EVT_TICK: c_int = 9;
const MOSQ_EVT_DISCONNECT: c_int = 10;

const MOSQ_ACL_READ: c_int = 0x01;
const MOSQ_ACL_WRITE: c_int = 0x02;
const MOSQ_ACL_SUBSCRIBE: c_int = 0x04;
const MOSQ_ACL_UNSUBSCRIBE: c_int = 0x08;

/// The plugin interface version this library speaks.
const PLUGIN_VERSION: c_int = 5;

/// `struct mosquitto` (opaque).
#[repr(C)]
pub struct Mosquitto {
    _private: [u8; 0],
}

/// `mosquitto_plugin_id_t` (opaque).
#[repr(C)]
pub struct PluginId {
    _private: [u8; 0],
}

/// `struct mosquitto_opt`.
#[repr(C)]
pub struct MosquittoOpt {
    key: *mut c_char,
    value: *mut c_char,
}

/// `struct mosquitto_evt_basic_auth`.
#[repr(C)]
struct EvtBasicAuth {
    future: *mut c_void,
    client: *mut Mosquitto,
    username: *mut c_char,
    password: *mut c_char,
    future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_acl_check`.
#[repr(C)]
struct EvtAclCheck {
    future: *mut c_void,
    client: *mut Mosquitto,
    topic: *const c_char,
    payload: *const c_void,
    properties: *mut c_void,
    access: c_int,
    payloadlen: u32,
    qos: u8,
    retain: bool,
    future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_disconnect`.
#[repr(C)]
struct EvtDisconnect {
    future: *mut c_void,
    client: *mut Mosquitto,
    reason: c_int,
    future2: [*mut c_void; 4],
}

type Callback = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

unsafe extern "C" {
    fn mosquitto_callback_register(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: Callback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    fn mosquitto_callback_unregister(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: Callback,
        event_data: *const c_void,
    ) -> c_int;
    fn mosquitto_client_id(client: *const Mosquitto) -> *const c_char;
    fn mosquitto_client_username(client: *const Mosquitto) -> *const c_char;
    fn mosquitto_client_address(client: *const Mosquitto) -> *const c_char;
    fn mosquitto_client_protocol_version(client: *const Mosquitto) -> c_int;
    fn mosquitto_kick_client_by_username(username: *const c_char, with_will: bool) -> c_int;
}

/// What `mosquitto_plugin_init` hands back as userdata.
struct State {
    id: *mut PluginId,
    plugin: Plugin,
}

const EVENTS: [(c_int, Callback); 4] = [
    (MOSQ_EVT_BASIC_AUTH, on_basic_auth),
    (MOSQ_EVT_ACL_CHECK, on_acl_check),
    (MOSQ_EVT_DISCONNECT, on_disconnect),
    (MOSQ_EVT_TICK, on_tick),
];

/// A C string borrowed for the duration of a callback; `None` for NULL or non-UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the callback.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, per the caller.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// Answers whether the broker offers plugin version 5.
///
/// # Safety
/// `supported_versions` points to `supported_version_count` ints (Mosquitto's contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_version(
    supported_version_count: c_int,
    supported_versions: *const c_int,
) -> c_int {
    let count = usize::try_from(supported_version_count).unwrap_or(0);
    if supported_versions.is_null() || count == 0 {
        return -1;
    }
    // SAFETY: Mosquitto passes an array of `count` versions.
    let versions = unsafe { std::slice::from_raw_parts(supported_versions, count) };
    if versions.contains(&PLUGIN_VERSION) {
        PLUGIN_VERSION
    } else {
        -1
    }
}

/// Reads `plugin_opt_url` and `plugin_opt_token`, starts following Fleetgate and registers
/// the callbacks.
///
/// # Safety
/// Mosquitto's contract: `identifier` is ours to keep, `userdata` writable, `options` an array
/// of `option_count` key/value pairs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_init(
    identifier: *mut PluginId,
    userdata: *mut *mut c_void,
    options: *mut MosquittoOpt,
    option_count: c_int,
) -> c_int {
    let count = usize::try_from(option_count).unwrap_or(0);
    let options: &[MosquittoOpt] = if options.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: Mosquitto passes `count` options.
        unsafe { std::slice::from_raw_parts(options, count) }
    };
    let option = |name: &str| {
        options.iter().find_map(|o| {
            // SAFETY: keys and values are NUL-terminated strings owned by Mosquitto.
            let (k, v) = unsafe { (text(o.key), text(o.value)) };
            (k == Some(name)).then_some(v).flatten()
        })
    };
    let (Some(url), Some(token)) = (option("url"), option("token")) else {
        log("plugin_opt_url and plugin_opt_token are required");
        return MOSQ_ERR_UNKNOWN;
    };
    let plugin = match catch_unwind(|| Plugin::start(url, token)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            log(&format!("cannot start: {e}"));
            return MOSQ_ERR_UNKNOWN;
        }
        Err(_) => return MOSQ_ERR_UNKNOWN,
    };
    let state = Box::into_raw(Box::new(State {
        id: identifier,
        plugin,
    }));
    for (event, callback) in EVENTS {
        // SAFETY: `identifier` is Mosquitto's; `state` lives until cleanup unregisters.
        let rc = unsafe {
            mosquitto_callback_register(
                identifier,
                event,
                callback,
                std::ptr::null(),
                state.cast::<c_void>(),
            )
        };
        if rc != MOSQ_ERR_SUCCESS {
            log(&format!("cannot register callback for event {event}: {rc}"));
            // SAFETY: `state` came from Box::into_raw above and is given back once.
            unsafe { release(state) };
            return rc;
        }
    }
    // SAFETY: `userdata` is writable (Mosquitto's contract).
    unsafe { *userdata = state.cast::<c_void>() };
    MOSQ_ERR_SUCCESS
}

/// Unregisters the callbacks and stops the threads.
///
/// # Safety
/// `userdata` is what `mosquitto_plugin_init` stored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *mut MosquittoOpt,
    _option_count: c_int,
) -> c_int {
    if !userdata.is_null() {
        // SAFETY: `userdata` is the State pointer init produced, released once here.
        unsafe { release(userdata.cast::<State>()) };
    }
    MOSQ_ERR_SUCCESS
}

/// Unregisters whatever is registered and frees the state.
///
/// # Safety
/// `state` came from `Box::into_raw` in init and is not used afterwards.
unsafe fn release(state: *mut State) {
    // SAFETY: per the caller.
    let mut state = unsafe { Box::from_raw(state) };
    for (event, callback) in EVENTS {
        // SAFETY: unregistering a callback that is not registered is a harmless error.
        unsafe { mosquitto_callback_unregister(state.id, event, callback, std::ptr::null()) };
    }
    state.plugin.stop();
}

/// The state behind a callback's userdata.
///
/// # Safety
/// `userdata` is the State pointer registered with the callback.
unsafe fn plugin<'a>(userdata: *mut c_void) -> &'a Plugin {
    // SAFETY: per the caller; the state outlives the registration.
    unsafe { &(*userdata.cast::<State>()).plugin }
}

/// Runs a callback body; a panic refuses instead of unwinding into C.
fn guarded(refuse: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(refuse)
}

unsafe extern "C" fn on_basic_auth(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_AUTH, || {
        // SAFETY: Mosquitto passes a basic-auth event and our userdata.
        let (ev, plugin) = unsafe { (&*data.cast::<EvtBasicAuth>(), plugin(userdata)) };
        // SAFETY: the client and its strings are valid during the callback.
        let (client_id, address, protocol) = unsafe {
            (
                text(mosquitto_client_id(ev.client)),
                text(mosquitto_client_address(ev.client)),
                mosquitto_client_protocol_version(ev.client),
            )
        };
        // SAFETY: the event's strings are NULL or NUL-terminated.
        let (username, password) = unsafe {
            (
                text(ev.username),
                (!ev.password.is_null()).then(|| CStr::from_ptr(ev.password).to_bytes()),
            )
        };
        let decided = plugin.basic_auth(
            ev.client as usize,
            client_id.unwrap_or_default(),
            username,
            password,
            address,
            protocol,
        );
        match decided {
            Ok(()) => MOSQ_ERR_SUCCESS,
            Err(_) => MOSQ_ERR_AUTH,
        }
    })
}

unsafe extern "C" fn on_acl_check(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_ACL_DENIED, || {
        // SAFETY: Mosquitto passes an ACL-check event and our userdata.
        let (ev, plugin) = unsafe { (&*data.cast::<EvtAclCheck>(), plugin(userdata)) };
        let access = match ev.access {
            MOSQ_ACL_READ => Access::Read,
            MOSQ_ACL_WRITE => Access::Write,
            MOSQ_ACL_SUBSCRIBE => Access::Subscribe,
            MOSQ_ACL_UNSUBSCRIBE => Access::Unsubscribe,
            _ => return MOSQ_ERR_ACL_DENIED,
        };
        // SAFETY: the client and the strings are valid during the callback.
        let (client_id, username, topic) = unsafe {
            (
                text(mosquitto_client_id(ev.client)),
                text(mosquitto_client_username(ev.client)),
                text(ev.topic),
            )
        };
        let (Some(client_id), Some(topic)) = (client_id, topic) else {
            return MOSQ_ERR_ACL_DENIED;
        };
        if plugin.acl_check(client_id, username, access, topic) {
            MOSQ_ERR_SUCCESS
        } else {
            MOSQ_ERR_ACL_DENIED
        }
    })
}

unsafe extern "C" fn on_disconnect(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_SUCCESS, || {
        // SAFETY: Mosquitto passes a disconnect event and our userdata.
        let (ev, plugin) = unsafe { (&*data.cast::<EvtDisconnect>(), plugin(userdata)) };
        plugin.disconnected(ev.client as usize);
        MOSQ_ERR_SUCCESS
    })
}

unsafe extern "C" fn on_tick(_event: c_int, _data: *mut c_void, userdata: *mut c_void) -> c_int {
    guarded(MOSQ_ERR_SUCCESS, || {
        // SAFETY: our userdata.
        let plugin = unsafe { plugin(userdata) };
        for username in plugin.take_revoked() {
            let Ok(username) = CString::new(username) else {
                continue;
            };
            // SAFETY: on Mosquitto's thread (a callback), with a valid C string; kicking a
            // user with no connection does nothing.
            unsafe { mosquitto_kick_client_by_username(username.as_ptr(), false) };
        }
        MOSQ_ERR_SUCCESS
    })
}
