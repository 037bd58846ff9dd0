/*
 * An example Coro sink plugin in plain C (the ABI is in core/include/coro_plugin.h):
 * one tab-separated line per record,
 *
 *     subject <TAB> sender <TAB> request id <TAB> idempotency key <TAB> data
 *
 * appended to the file named by the config's "path" (tabs, newlines and backslashes in
 * the data are escaped as \t, \n and \\). Without "path" it keeps nothing and answers
 * delivered: a blackhole, for benchmarks. Empty records are rejected, to show how.
 *
 *     cc -shared -fPIC -O2 -I core/include -o libcoro_tsv.so examples/plugins/c/tsv.c
 *
 *     [[adapter.sink]]
 *     type = "plugin"
 *     path = "/usr/lib/coro/libcoro_tsv.so"
 *     config = { path = "/var/lib/coro/records.tsv" }
 *
 * It declares itself thread-safe: a batch is written under the stdio lock of its FILE,
 * so `threads = 2` and more may call send at the same time.
 */
#include "coro_plugin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct TsvSink {
    FILE *out; /* NULL: blackhole */
    char *path;
} TsvSink;

/* A message for the host, freed by tsv_free_string. */
static char *message(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (n < 0) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s != NULL) {
        va_start(args, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, args);
        va_end(args);
    }
    return s;
}

/* The string value of "key" in a flat JSON object, malloc'd; NULL when absent. A toy
 * reader, enough for this example: no escapes inside the value. */
static char *config_string(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *at = strstr(json, pattern);
    if (at == NULL) {
        return NULL;
    }
    at = strchr(at + strlen(pattern), ':');
    if (at == NULL) {
        return NULL;
    }
    at = strchr(at, '"');
    if (at == NULL) {
        return NULL;
    }
    const char *end = strchr(at + 1, '"');
    if (end == NULL) {
        return NULL;
    }
    size_t len = (size_t)(end - at - 1);
    char *value = malloc(len + 1);
    if (value != NULL) {
        memcpy(value, at + 1, len);
        value[len] = '\0';
    }
    return value;
}

static int32_t tsv_check(const char *config, size_t config_len, char **error) {
    (void)config_len;
    if (strstr(config, "\"path\"") != NULL) {
        char *path = config_string(config, "path");
        if (path == NULL || path[0] == '\0') {
            free(path);
            *error = message("tsv: path must be a non-empty string");
            return CORO_STATUS_FATAL;
        }
        free(path);
    }
    return CORO_STATUS_OK;
}

static int32_t tsv_create(const char *config, size_t config_len, void **sink, char **error) {
    int32_t status = tsv_check(config, config_len, error);
    if (status != CORO_STATUS_OK) {
        return status;
    }
    TsvSink *s = calloc(1, sizeof *s);
    if (s == NULL) {
        *error = message("tsv: out of memory");
        return CORO_STATUS_RETRY;
    }
    s->path = config_string(config, "path");
    if (s->path != NULL) {
        s->out = fopen(s->path, "a");
        if (s->out == NULL) {
            *error = message("tsv: %s: %s", s->path, strerror(errno));
            free(s->path);
            free(s);
            return CORO_STATUS_FATAL;
        }
    }
    *sink = s;
    return CORO_STATUS_OK;
}

static void put_escaped(FILE *out, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        switch (data[i]) {
        case '\t': fputs("\\t", out); break;
        case '\n': fputs("\\n", out); break;
        case '\\': fputs("\\\\", out); break;
        default: putc_unlocked(data[i], out);
        }
    }
}

static int32_t tsv_send(void *sink, const CoroRecord *records, size_t count,
                        CoroOutcome *outcomes, char **error) {
    TsvSink *s = sink;
    if (s->out != NULL) {
        flockfile(s->out);
    }
    for (size_t i = 0; i < count; i++) {
        const CoroRecord *r = &records[i];
        if (r->data_len == 0) {
            outcomes[i].kind = CORO_OUTCOME_REJECT;
            outcomes[i].reason = message("tsv: record %.*s is empty", (int)r->request_id_len,
                                         r->request_id);
            continue;
        }
        if (s->out != NULL) {
            fprintf(s->out, "%.*s\t%.*s\t%.*s\t%.*s\t", (int)r->subject_len, r->subject,
                    (int)r->sender_len, r->sender, (int)r->request_id_len, r->request_id,
                    (int)r->idempotency_key_len, r->idempotency_key);
            put_escaped(s->out, r->data, r->data_len);
            putc_unlocked('\n', s->out);
        }
        outcomes[i].kind = CORO_OUTCOME_DELIVERED;
    }
    int32_t status = CORO_STATUS_OK;
    /* Delivered means on the disk: flush and sync before answering. */
    if (s->out != NULL) {
        if (fflush(s->out) != 0 || fsync(fileno(s->out)) != 0) {
            *error = message("tsv: %s: %s", s->path, strerror(errno));
            status = CORO_STATUS_RETRY;
        }
        funlockfile(s->out);
    }
    return status;
}

static int32_t tsv_flush(void *sink, char **error) {
    TsvSink *s = sink;
    if (s->out != NULL && fflush(s->out) != 0) {
        *error = message("tsv: %s: %s", s->path, strerror(errno));
        return CORO_STATUS_RETRY;
    }
    return CORO_STATUS_OK;
}

static void tsv_destroy(void *sink) {
    TsvSink *s = sink;
    if (s->out != NULL) {
        fclose(s->out);
    }
    free(s->path);
    free(s);
}

static void tsv_free_string(char *s) { free(s); }

static const CoroPluginApi API = {
    .abi_version = CORO_PLUGIN_ABI_VERSION,
    .flags = CORO_PLUGIN_FLAG_THREAD_SAFE,
    .check = tsv_check,
    .create = tsv_create,
    .send = tsv_send,
    .flush = tsv_flush,
    .destroy = tsv_destroy,
    .free_string = tsv_free_string,
};

const CoroPluginApi *coro_sink_plugin_v1(void) { return &API; }
