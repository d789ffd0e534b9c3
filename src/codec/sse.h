/* Incremental server-sent-events parser (WHATWG "event stream interpretation"): bytes are
 * fed as they arrive, split at any point; one callback per dispatched event. Accepts LF,
 * CRLF and CR line ends; joins multiple data lines with '\n'; ignores comments and
 * unknown fields; strips one space after the colon. An event's size is capped. */
#ifndef CMX_CODEC_SSE_H
#define CMX_CODEC_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct cmx_sse_event {
    const char *event; /* "event:" field, NUL-terminated; "" when absent */
    size_t event_len;
    const char *data; /* data lines joined with '\n', NUL-terminated; valid only in the cb */
    size_t data_len;
    const char *id; /* "id:" field, NUL-terminated; "" when absent */
    size_t id_len;
};

/* Called for each complete event that has a data field. A non-zero return stops the
 * parser; cmx_sse_parser_feed then returns that value. */
typedef int (*cmx_sse_event_cb)(void *ud, const struct cmx_sse_event *ev);

struct cmx_sse_parser {
    struct cmx_buf line;  /* the current, incomplete line */
    struct cmx_buf data;  /* data of the event being built */
    struct cmx_buf event; /* event name of the event being built */
    struct cmx_buf id;    /* id of the event being built */
    bool has_data;        /* a data field was seen for the event being built */
    bool skip_lf;         /* the previous chunk ended in CR: drop a leading LF */
    bool bom_checked;     /* the leading UTF-8 BOM (if any) was handled */
    size_t max_event;     /* cap on line and event sizes */
};

/* Initialises p; events or lines larger than max_event bytes make feed fail with
 * CMX_ETOOBIG. */
void cmx_sse_parser_init(struct cmx_sse_parser *p, size_t max_event);

/* Feeds len bytes. Returns 0, a callback's non-zero return, CMX_ETOOBIG or CMX_ENOMEM. */
int cmx_sse_parser_feed(struct cmx_sse_parser *p, const char *buf, size_t len, cmx_sse_event_cb cb,
                        void *ud);

/* At end of input: a final event whose blank line never came is dispatched when it has
 * data (tolerance for servers that close right after the last event). Same returns. */
int cmx_sse_parser_finish(struct cmx_sse_parser *p, cmx_sse_event_cb cb, void *ud);

/* Frees the buffers. */
void cmx_sse_parser_free(struct cmx_sse_parser *p);

#endif
