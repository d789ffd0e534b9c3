/* The JSON access log: one line per request on stdout. Each worker formats into its own
 * buffer and flushes once per loop iteration (and when the buffer fills), so logging costs
 * no lock and about one write(2) per batch. Lines never contain credentials: only ids,
 * names, numbers and the error message the client also saw (already redacted). */
#ifndef CMX_OBS_ACCESSLOG_H
#define CMX_OBS_ACCESSLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

struct cmx_access_entry {
    uint64_t time_ms;            /* wall clock at the end of the request */
    const char *request_id;      /* x-request-id */
    const char *method;          /* HTTP method */
    const char *path;            /* path without query */
    const char *model;           /* public model name, NULL when none */
    const char *provider;        /* provider that served (or last tried), NULL when none */
    int status;                  /* status sent to the client (499: client went away) */
    uint64_t latency_us;         /* request start to end */
    int64_t upstream_latency_us; /* last attempt's start to its end, -1 when none */
    int64_t ttfb_us;             /* request start to the first byte sent, -1 when none */
    int64_t prompt_tokens;       /* -1 when unknown */
    int64_t completion_tokens;   /* -1 when unknown */
    int64_t cached_tokens;       /* -1 when unknown */
    int attempts;                /* upstream attempts made */
    bool stream;                 /* streamed answer */
    const char *error;           /* error code sent, NULL on success */
    const char *tenant;          /* the caller's tenant, NULL in open mode */
    const char *key_id;          /* the virtual key's public id (never the key), or NULL */
};

struct cmx_accesslog {
    struct cmx_buf buf; /* pending lines */
    int fd;             /* where they go */
    bool enabled;       /* false: entries are dropped */
    uint64_t ts_sec;    /* the second ts_text holds ("YYYY-MM-DDTHH:MM:SS"), +1 */
    char ts_text[24];
};

/* Prepares a log writing to fd (not owned). */
void cmx_accesslog_init(struct cmx_accesslog *l, int fd, bool enabled);

/* Formats e as one JSON line into the buffer; flushes when it is large. */
void cmx_accesslog_write(struct cmx_accesslog *l, const struct cmx_access_entry *e);

/* Writes out what is buffered. */
void cmx_accesslog_flush(struct cmx_accesslog *l);

/* Flushes and frees the buffer. */
void cmx_accesslog_free(struct cmx_accesslog *l);

#endif
