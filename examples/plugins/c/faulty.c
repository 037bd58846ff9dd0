/*
 * A misbehaving sink plugin, for testing that the host contains it (not an example to
 * follow). The config's "mode" picks the fault:
 *
 *   "garbage"  answers outcome kind 77 for every record
 *   "unset"    answers nothing (leaves the outcomes as pre-filled)
 *   "retry"    fails every send as a whole, retriably, with a message
 *   "status"   returns status 42 from send
 *   "refuse"   create fails with a message; check refuses the config
 *   "reasons"  answers retry after 1500 ms for even records, reject for odd ones
 *
 * Compile-time faults: -DFAULTY_ABI_VERSION=N puts another version in the table;
 * -DFAULTY_NO_ENTRY exports no entry symbol; -DFAULTY_NO_SEND leaves send NULL;
 * -DFAULTY_NULL_TABLE makes the entry function return NULL.
 */
#include "coro_plugin.h"

#include <stdlib.h>
#include <string.h>

#ifndef FAULTY_ABI_VERSION
#define FAULTY_ABI_VERSION CORO_PLUGIN_ABI_VERSION
#endif

typedef struct Faulty {
    char mode[16];
} Faulty;

static char *copy(const char *s) {
    char *out = malloc(strlen(s) + 1);
    if (out != NULL) {
        strcpy(out, s);
    }
    return out;
}

static void mode_of(const char *config, char mode[16]) {
    mode[0] = '\0';
    const char *at = strstr(config, "\"mode\":\"");
    if (at == NULL) {
        return;
    }
    at += strlen("\"mode\":\"");
    size_t i = 0;
    while (i < 15 && at[i] != '\0' && at[i] != '"') {
        mode[i] = at[i];
        i++;
    }
    mode[i] = '\0';
}

static int32_t faulty_check(const char *config, size_t len, char **error) {
    (void)len;
    char mode[16];
    mode_of(config, mode);
    if (strcmp(mode, "refuse") == 0) {
        *error = copy("faulty: this config is refused");
        return CORO_STATUS_FATAL;
    }
    return CORO_STATUS_OK;
}

static int32_t faulty_create(const char *config, size_t len, void **sink, char **error) {
    (void)len;
    Faulty *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return CORO_STATUS_RETRY;
    }
    mode_of(config, f->mode);
    if (strcmp(f->mode, "refuse") == 0) {
        free(f);
        *error = copy("faulty: create refused");
        return CORO_STATUS_FATAL;
    }
    *sink = f;
    return CORO_STATUS_OK;
}

__attribute__((unused)) static int32_t faulty_send(void *sink, const CoroRecord *records, size_t count,
                           CoroOutcome *outcomes, char **error) {
    (void)records;
    Faulty *f = sink;
    if (strcmp(f->mode, "retry") == 0) {
        /* A reason set before failing the batch must still be freed by the host. */
        if (count > 0) {
            outcomes[0].reason = copy("ignored");
        }
        *error = copy("faulty: asked to fail");
        return CORO_STATUS_RETRY;
    }
    if (strcmp(f->mode, "status") == 0) {
        return 42;
    }
    if (strcmp(f->mode, "unset") == 0) {
        return CORO_STATUS_OK;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(f->mode, "garbage") == 0) {
            outcomes[i].kind = 77;
        } else if (strcmp(f->mode, "reasons") == 0 && i % 2 == 0) {
            outcomes[i].kind = CORO_OUTCOME_RETRY;
            outcomes[i].retry_after_ms = 1500;
            outcomes[i].reason = copy("faulty: later");
        } else if (strcmp(f->mode, "reasons") == 0) {
            outcomes[i].kind = CORO_OUTCOME_REJECT;
            outcomes[i].reason = copy("faulty: never");
        } else {
            outcomes[i].kind = CORO_OUTCOME_DELIVERED;
        }
    }
    return CORO_STATUS_OK;
}

static void faulty_destroy(void *sink) { free(sink); }

static void faulty_free_string(char *s) { free(s); }

static const CoroPluginApi API __attribute__((unused)) = {
    .abi_version = FAULTY_ABI_VERSION,
    .flags = 0,
    .check = faulty_check,
    .create = faulty_create,
#ifdef FAULTY_NO_SEND
    .send = NULL,
#else
    .send = faulty_send,
#endif
    .flush = NULL,
    .destroy = faulty_destroy,
    .free_string = faulty_free_string,
};

#ifdef FAULTY_NO_ENTRY
/* Something exported, so this is a valid library, just not a plugin. */
const CoroPluginApi *coro_sink_plugin_v0(void) { return &API; }
#elif defined(FAULTY_NULL_TABLE)
const CoroPluginApi *coro_sink_plugin_v1(void) { return NULL; }
#else
const CoroPluginApi *coro_sink_plugin_v1(void) { return &API; }
#endif
