/*
 * coro_plugin.h: the C ABI of Coro sink plugins, version 1.
 *
 * A plugin is a shared library that exports one function,
 *
 *     const CoroPluginApi *coro_sink_plugin_v1(void);
 *
 * returning a pointer to a static table: the ABI version, flags, and the functions
 * below. Coro loads it for a sink written in adapters.toml as
 *
 *     [[adapter.sink]]
 *     type = "plugin"
 *     path = "/usr/lib/coro/libmysink.so"
 *     config = { path = "/var/lib/coro/out.tsv" }   # passed to create() as JSON
 *
 * Calls: check(config) (optional; `coro validate`), create(config) once per configured
 * sink, send(handle, records, count, outcomes) per batch, flush(handle) (optional) once
 * before destroy(handle), the last call on a handle.
 *
 * Ownership:
 *  - Everything Coro passes in (config JSON, records, their bytes) is borrowed for the
 *    duration of the call only. Copy what you keep.
 *  - Strings the plugin hands out (an *error, an outcome's reason) are NUL-terminated,
 *    allocated by the plugin, and given back exactly once through free_string.
 *  - The handle from create belongs to the plugin; destroy is called on it exactly once.
 *    A stateless plugin may use NULL as its handle.
 *  - The table must stay valid while the library is loaded (make it static). Coro never
 *    unloads a plugin library.
 *
 * Threading:
 *  - The entry function and check may be called from any thread at any time.
 *  - create/send/flush/destroy on a handle run on Coro's dedicated plugin threads, never
 *    on its async executor: blocking is allowed. With threads = 1 (the default) they
 *    all come from one thread, one at a time.
 *  - send runs concurrently on one handle only if flags has CORO_PLUGIN_FLAG_THREAD_SAFE
 *    and the sink sets threads > 1. flush and destroy never overlap anything.
 *  - A call slower than the sink's timeout is abandoned: its records are retried while
 *    the thread keeps waiting for the plugin. Delivery is at least once; de-duplicate on
 *    idempotency_key.
 *  - Never let an exception or a Rust panic unwind out of these functions.
 */
#ifndef CORO_PLUGIN_H
#define CORO_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORO_PLUGIN_ABI_VERSION 1
#define CORO_PLUGIN_ENTRY "coro_sink_plugin_v1"

/* flags: send may be called concurrently on one handle. */
#define CORO_PLUGIN_FLAG_THREAD_SAFE 1

/* Statuses returned by check, create, send and flush. */
#define CORO_STATUS_OK 0
#define CORO_STATUS_RETRY 1 /* the whole call failed; worth trying again */
#define CORO_STATUS_FATAL 2 /* the whole call failed; would fail again */
#define CORO_STATUS_PANIC 3 /* the plugin caught a panic/exception of its own */

/* CoroOutcome.kind */
#define CORO_OUTCOME_UNSET 0     /* pre-filled by Coro: not answered */
#define CORO_OUTCOME_DELIVERED 1 /* the destination has it durably */
#define CORO_OUTCOME_RETRY 2     /* send again, after retry_after_ms if not 0 */
#define CORO_OUTCOME_REJECT 3    /* never: dead-letter it with reason */

/* CoroRecord.kind */
#define CORO_KIND_REQUEST 1
#define CORO_KIND_REPLY 2
#define CORO_KIND_REGISTRATION 3
#define CORO_KIND_LIFECYCLE 4
#define CORO_KIND_DEAD_LETTER 5

/* One record, borrowed for the duration of send. Strings are UTF-8 and NOT
 * NUL-terminated: use the lengths (e.g. printf("%.*s", (int)r->subject_len, r->subject)). */
typedef struct CoroRecord {
    const uint8_t *data; /* the record in the sink's encoding (default: the body) */
    size_t data_len;
    const char *subject; /* the NATS subject it arrived on */
    size_t subject_len;
    const char *sender; /* the sender identity */
    size_t sender_len;
    const char *request_id;
    size_t request_id_len;
    const char *idempotency_key; /* the same for a redelivered message */
    size_t idempotency_key_len;
    const char *agent; /* agent, or lifecycle component */
    size_t agent_len;
    uint32_t kind;             /* CORO_KIND_* */
    uint32_t protocol_version; /* Choria protocol 1 or 2 */
    int64_t time_ns;           /* Choria time, unix nanoseconds */
} CoroRecord;

/* One answer per record, filled by send. Coro pre-fills kind = CORO_OUTCOME_UNSET and
 * reason = NULL. */
typedef struct CoroOutcome {
    uint32_t kind; /* CORO_OUTCOME_* */
    uint32_t reserved; /* 0 */
    uint64_t retry_after_ms;
    char *reason; /* optional, plugin-allocated, freed by Coro with free_string */
} CoroOutcome;

typedef struct CoroPluginApi {
    uint32_t abi_version; /* CORO_PLUGIN_ABI_VERSION */
    uint32_t flags;       /* CORO_PLUGIN_FLAG_* */
    /* Optional (may be NULL). config is config_len bytes of a JSON object followed by a
     * NUL. Returns CORO_STATUS_OK, or another status and optionally sets *error. */
    int32_t (*check)(const char *config, size_t config_len, char **error);
    /* Required. Stores the new instance's handle in *sink. */
    int32_t (*create)(const char *config, size_t config_len, void **sink, char **error);
    /* Required. Fill outcomes[0..count) and return CORO_STATUS_OK, or fail the whole
     * batch with another status (outcomes are then ignored; their reasons still freed). */
    int32_t (*send)(void *sink, const CoroRecord *records, size_t count,
                    CoroOutcome *outcomes, char **error);
    /* Optional. Called once, before destroy. */
    int32_t (*flush)(void *sink, char **error);
    /* Required. The last call on a handle. */
    void (*destroy)(void *sink);
    /* Required. Frees a string the plugin returned (errors and reasons). */
    void (*free_string)(char *s);
} CoroPluginApi;

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && UINTPTR_MAX == 0xffffffffffffffffu
/* The same sizes are asserted on the Rust side (coro-core plugin.rs). */
_Static_assert(sizeof(CoroRecord) == 112, "CoroRecord layout");
_Static_assert(sizeof(CoroOutcome) == 24, "CoroOutcome layout");
_Static_assert(sizeof(CoroPluginApi) == 56, "CoroPluginApi layout");
#endif

/* The one symbol a plugin exports. */
const CoroPluginApi *coro_sink_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* CORO_PLUGIN_H */
