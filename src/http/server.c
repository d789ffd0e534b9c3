/* HTTP/1.1 server on libuv + http-parser.
 *
 * One connection serves one request at a time. Pipelined requests wait, unparsed, in the
 * connection's input buffer: the parser is paused at the end of each message and resumed
 * when its answer is finished (http-parser does not support pipelining by itself). While a
 * request is in flight we keep reading (up to a cap) so that a client that goes away is
 * noticed at once and its upstream request can be canceled. */
#include "http/http.h"
#include "core/fmt.h"
#include "core/err.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#define READ_CHUNK      65536
#define PIPELINE_CAP    (1u << 20) /* unparsed input kept while a request is in flight */
#define DRAIN_LOW_WATER (64u * 1024)

enum conn_state {
    CONN_IDLE,     /* waiting for a request (keep-alive) */
    CONN_HEADERS,  /* reading request line and headers */
    CONN_BODY,     /* reading the body */
    CONN_INFLIGHT, /* the handler has the request */
};

struct hdr_off {
    uint32_t name, name_len, value, value_len;
};

struct cmx_http_conn {
    uv_tcp_t tcp;                /* must stay first: handle->data is not used */
    uv_timer_t timer;            /* header/body/keep-alive timeouts */
    struct cmx_http_server *srv; /* owner */
    struct cmx_http_conn *prev;  /* server's list of connections */
    struct cmx_http_conn *next;
    http_parser parser;        /* request parser */
    struct cmx_buf in;         /* received, not yet parsed bytes */
    struct cmx_buf hbuf;       /* url and header text of the current request */
    struct cmx_buf hoffs;      /* struct hdr_off entries into hbuf */
    uint32_t url_off, url_len; /* request target in hbuf */
    enum conn_state state;     /* what we are waiting for */
    int pending_error;         /* status to answer when parsing stopped on purpose */
    uint64_t last_activity;    /* uv_now() of the last byte read in HEADERS/BODY */
    size_t write_pending;      /* bytes handed to uv_write and not yet written */
    int handles_open;          /* tcp + timer until closed */
    bool last_was_value;       /* header callback bookkeeping */
    bool req_active;           /* the handler owns req */
    bool in_dispatch;          /* inside the handler call */
    bool in_process;           /* inside process_input() */
    bool close_after;          /* close once the answer is written */
    bool reading;              /* uv_read_start is active */
    bool closing;              /* uv_close called */
    bool head_request;         /* current request is HEAD */
    bool http10;               /* current request is HTTP/1.0 */
    struct cmx_http_req req;   /* the current request */
};

struct cmx_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct cmx_http_limits limits;
    cmx_http_handler_cb handler;
    cmx_http_reject_cb reject; /* the server's own refusals, or NULL */
    void *ud;
    struct cmx_http_conn *conns; /* every open connection */
    size_t n_conns;
    size_t inflight;
    bool listening;     /* listener not closed yet */
    bool draining;      /* graceful stop in progress */
    bool closing;       /* forced stop in progress */
    bool freed_pending; /* free once the listener and connections are closed */
    void (*drain_cb)(void *);
    void *drain_arg;
    struct cmx_buf scratch; /* response heads are formatted here (one loop, one user) */
    char date[40];          /* cached Date header value */
    uint64_t date_sec;      /* second of date[] */
};

struct wreq {
    uv_write_t w;
    struct cmx_http_conn *conn;
    size_t len;
    char data[];
};

static http_parser_settings settings;
static void process_input(struct cmx_http_conn *c);
static void read_start(struct cmx_http_conn *c);
static void conn_close(struct cmx_http_conn *c);
static void finish_request(struct cmx_http_conn *c);
static void maybe_server_done(struct cmx_http_server *s);

/* ---- small helpers ---------------------------------------------------------------- */

const char *cmx_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 424:
        return "Failed Dependency";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Site Overloaded";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirection"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

static const char *date_header(struct cmx_http_server *s)
{
    uint64_t now = uv_now(s->loop) / 1000;
    if (now != s->date_sec || s->date[0] == '\0') {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

static enum cmx_http_method map_method(unsigned m)
{
    switch (m) {
    case HTTP_GET:
        return CMX_HTTP_GET;
    case HTTP_HEAD:
        return CMX_HTTP_HEAD;
    case HTTP_POST:
        return CMX_HTTP_POST;
    case HTTP_PUT:
        return CMX_HTTP_PUT;
    case HTTP_DELETE:
        return CMX_HTTP_DELETE;
    case HTTP_PATCH:
        return CMX_HTTP_PATCH;
    case HTTP_OPTIONS:
        return CMX_HTTP_OPTIONS;
    default:
        return CMX_HTTP_OTHER;
    }
}

/* ---- writing ------------------------------------------------------------------------ */

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct cmx_http_conn *c = wr->conn;
    c->write_pending -= wr->len;
    free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->closing)
        return;
    if (c->write_pending == 0 && c->close_after && !c->req_active) {
        conn_close(c);
        return;
    }
    if (c->req_active && c->req.on_drain != NULL && c->write_pending < DRAIN_LOW_WATER)
        c->req.on_drain(&c->req);
}

/* Writes bufs in order: straight to the socket when nothing is queued, the rest copied
 * into one heap block handed to uv_write. Returns bytes left queued. */
static size_t conn_writev(struct cmx_http_conn *c, uv_buf_t *bufs, unsigned n)
{
    if (c->closing)
        return 0;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    size_t done = 0;
    if (c->write_pending == 0) {
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (r >= 0)
            done = (size_t)r;
        else if (r != UV_EAGAIN) {
            conn_close(c);
            return 0;
        }
    }
    if (done == total)
        return c->write_pending;
    size_t left = total - done;
    struct wreq *wr = malloc(sizeof(*wr) + left);
    if (wr == NULL) {
        conn_close(c);
        return 0;
    }
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(wr->data + off, bufs[i].base + skip, len - skip);
        off += len - skip;
        skip = 0;
    }
    wr->conn = c;
    wr->len = left;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)left);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
        free(wr);
        conn_close(c);
        return 0;
    }
    c->write_pending += left;
    return c->write_pending;
}

/* Appends "name: value\r\n". */
static int put_header(struct cmx_buf *buf, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    int r = cmx_buf_append(buf, name, nlen);
    if (r == 0)
        r = cmx_buf_append(buf, ": ", 2);
    if (r == 0)
        r = cmx_buf_append(buf, value, vlen);
    if (r == 0)
        r = cmx_buf_append(buf, "\r\n", 2);
    return r;
}

/* Formats the status line and headers of the answer into buf (no printf: this runs for
 * every response). */
static int format_head(struct cmx_http_conn *c, int status, const char *content_type,
                       long long content_length, bool chunked, struct cmx_buf *buf)
{
    struct cmx_http_req *req = &c->req;
    char line[16], num[24];
    const char *reason = cmx_http_reason(status);
    const char *date = date_header(c->srv);
    unsigned st = status >= 100 && status <= 999 ? (unsigned)status : 500;

    memcpy(line, "HTTP/1.1 ", 9);
    line[7] = c->http10 ? '0' : '1';
    line[9] = (char)('0' + st / 100);
    line[10] = (char)('0' + st / 10 % 10);
    line[11] = (char)('0' + st % 10);
    line[12] = ' ';
    int r = cmx_buf_append(buf, line, 13);
    if (r == 0)
        r = cmx_buf_puts(buf, reason);
    if (r == 0)
        r = cmx_buf_append(buf, "\r\nserver: cloudmux\r\n", 20);
    if (r == 0)
        r = put_header(buf, "date", 4, date, strlen(date));
    if (r == 0 && content_type != NULL)
        r = put_header(buf, "content-type", 12, content_type, strlen(content_type));
    if (r == 0 && content_length >= 0) {
        char *d = cmx_fmt_u64(num + sizeof(num), (uint64_t)content_length);
        r = put_header(buf, "content-length", 14, d, (size_t)(num + sizeof(num) - d));
    }
    if (r == 0 && chunked)
        r = cmx_buf_puts(buf, "transfer-encoding: chunked\r\n");
    for (size_t i = 0; r == 0 && i < req->n_resp_headers; i++) {
        const struct cmx_http_header *h = &req->resp_headers[i];
        r = put_header(buf, h->name, h->name_len, h->value, h->value_len);
    }
    if (r == 0) {
        if (c->close_after)
            r = cmx_buf_puts(buf, "connection: close\r\n\r\n");
        else if (c->http10)
            r = cmx_buf_puts(buf, "connection: keep-alive\r\n\r\n");
        else
            r = cmx_buf_puts(buf, "\r\n");
    }
    return r;
}

static bool answerable(struct cmx_http_req *req)
{
    struct cmx_http_conn *c = req->conn;
    return c != NULL && !c->closing && c->req_active && !req->finished;
}

void cmx_http_respond(struct cmx_http_req *req, int status, const char *content_type,
                      const char *body, size_t len)
{
    if (!answerable(req) || req->status != 0)
        return;
    struct cmx_http_conn *c = req->conn;
    if (!req->keep_alive || c->srv->draining || c->srv->closing)
        c->close_after = true;
    struct cmx_buf *head = &c->srv->scratch;
    cmx_buf_reset(head);
    if (format_head(c, status, content_type, (long long)len, false, head) != 0) {
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(head->data, (unsigned)head->len),
                        uv_buf_init((char *)body, (unsigned)len)};
    req->status = status;
    req->bytes_sent = len;
    conn_writev(c, bufs, (c->head_request || len == 0) ? 1 : 2);
    finish_request(c);
}

static int small_head(struct cmx_http_conn *c, int status, const char *ct, bool chunked,
                      long long clen)
{
    struct cmx_buf *head = &c->srv->scratch;
    cmx_buf_reset(head);
    int r = format_head(c, status, ct, clen, chunked, head);
    if (r == 0) {
        uv_buf_t b = uv_buf_init(head->data, (unsigned)head->len);
        conn_writev(c, &b, 1);
    }
    return r;
}

void cmx_http_stream_start(struct cmx_http_req *req, int status, const char *content_type)
{
    if (!answerable(req) || req->status != 0)
        return;
    struct cmx_http_conn *c = req->conn;
    if (!req->keep_alive || c->srv->draining || c->http10)
        c->close_after = true;
    req->status = status;
    req->streaming = true;
    if (small_head(c, status, content_type, !c->http10, -1) != 0)
        conn_close(c);
}

size_t cmx_http_stream_write(struct cmx_http_req *req, const char *data, size_t len)
{
    if (!answerable(req) || !req->streaming || len == 0)
        return req->conn != NULL ? req->conn->write_pending : 0;
    struct cmx_http_conn *c = req->conn;
    req->bytes_sent += len;
    if (c->http10) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        return conn_writev(c, &b, 1);
    }
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    uv_buf_t bufs[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                        uv_buf_init((char *)"\r\n", 2)};
    return conn_writev(c, bufs, 3);
}

void cmx_http_stream_end(struct cmx_http_req *req)
{
    if (!answerable(req) || !req->streaming)
        return;
    struct cmx_http_conn *c = req->conn;
    if (!c->http10) {
        uv_buf_t b = uv_buf_init((char *)"0\r\n\r\n", 5);
        conn_writev(c, &b, 1);
    }
    finish_request(c);
}

void cmx_http_abandon(struct cmx_http_req *req)
{
    if (!answerable(req))
        return;
    req->conn->close_after = true;
    finish_request(req->conn);
}

int cmx_http_add_header(struct cmx_http_req *req, const char *name, const char *value)
{
    if (req->n_resp_headers == req->cap_resp_headers) {
        size_t cap = req->cap_resp_headers ? req->cap_resp_headers * 2 : 8;
        struct cmx_http_header *h = cmx_arena_alloc(&req->arena, cap * sizeof(*h));
        if (h == NULL)
            return CMX_ENOMEM;
        if (req->n_resp_headers)
            memcpy(h, req->resp_headers, req->n_resp_headers * sizeof(*h));
        req->resp_headers = h;
        req->cap_resp_headers = cap;
    }
    struct cmx_http_header *h = &req->resp_headers[req->n_resp_headers];
    h->name_len = strlen(name);
    h->value_len = strlen(value);
    h->name = cmx_arena_strndup(&req->arena, name, h->name_len);
    h->value = cmx_arena_strndup(&req->arena, value, h->value_len);
    if (h->name == NULL || h->value == NULL)
        return CMX_ENOMEM;
    /* header injection: never let CR/LF from a peer into our head */
    for (char *p = (char *)h->value; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    req->n_resp_headers++;
    return 0;
}

bool cmx_http_peer_is_loopback(const struct cmx_http_req *req)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (req->conn == NULL || uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(in6->sin6_addr.s6_addr, v4mapped, 12) == 0)
            return in6->sin6_addr.s6_addr[12] == 127;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

const struct cmx_http_header *cmx_http_find_header(const struct cmx_http_req *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name_len == len && memcmp(req->headers[i].name, name, len) == 0)
            return &req->headers[i];
    return NULL;
}

/* An error answer produced by the server itself (bad request line, timeouts, limits): it
 * always closes the connection, since the rest of the input cannot be trusted. */
static void server_error(struct cmx_http_conn *c, int status, const char *code, const char *msg)
{
    if (c->closing)
        return;
    c->close_after = true;
    if (!c->req_active) {
        c->req_active = true;
        c->srv->inflight++;
    }
    c->req.keep_alive = false;
    if (c->srv->reject != NULL) {
        c->srv->reject(&c->req, status, code, msg, c->srv->ud);
        return;
    }
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\","
                     "\"param\":null,\"code\":\"%s\"}}",
                     msg, code);
    c->req.keep_alive = false;
    cmx_http_respond(&c->req, status, "application/json", body, (size_t)n);
}

/* ---- request lifecycle --------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

static void arm_timer(struct cmx_http_conn *c, int ms)
{
    if (ms > 0)
        uv_timer_start(&c->timer, timer_cb, (uint64_t)ms, 0);
    else
        uv_timer_stop(&c->timer);
}

static void reset_request(struct cmx_http_conn *c)
{
    struct cmx_http_req *req = &c->req;
    cmx_arena_reset(&req->arena);
    cmx_buf_free(&req->body);
    cmx_buf_init(&req->body, c->srv->limits.max_body_bytes);
    cmx_buf_reset(&c->hbuf);
    cmx_buf_reset(&c->hoffs);
    req->method = CMX_HTTP_OTHER;
    req->method_name = "";
    req->path = req->query = "";
    req->path_len = 0;
    req->headers = NULL;
    req->n_headers = 0;
    req->resp_headers = NULL;
    req->n_resp_headers = req->cap_resp_headers = 0;
    req->status = 0;
    req->bytes_sent = 0;
    req->streaming = req->finished = false;
    req->keep_alive = false;
    req->on_abort = NULL;
    req->on_drain = NULL;
    req->data = NULL;
    c->url_len = 0;
    c->last_was_value = false;
    c->pending_error = 0;
}

static void finish_request(struct cmx_http_conn *c)
{
    struct cmx_http_req *req = &c->req;
    req->finished = true;
    if (c->in_dispatch)
        return; /* dispatch() completes the bookkeeping once the handler returns */
    c->req_active = false;
    c->srv->inflight--;
    if (c->close_after || c->srv->draining || c->srv->closing) {
        c->close_after = true;
        if (c->write_pending == 0)
            conn_close(c);
        else {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        maybe_server_done(c->srv);
        return;
    }
    reset_request(c);
    c->state = CONN_IDLE;
    arm_timer(c, c->srv->limits.keepalive_timeout_ms);
    if (!c->in_process)
        process_input(c);
}

static void dispatch(struct cmx_http_conn *c)
{
    struct cmx_http_req *req = &c->req;
    c->state = CONN_INFLIGHT;
    uv_timer_stop(&c->timer);
    c->req_active = true;
    c->srv->inflight++;
    c->in_dispatch = true;
    c->srv->handler(req, c->srv->ud);
    c->in_dispatch = false;
    if (req->finished && c->req_active)
        finish_request(c);
}

/* ---- http-parser callbacks ----------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct cmx_http_conn *c = p->data;
    c->state = CONN_HEADERS;
    c->req.start_ns = uv_hrtime();
    c->last_activity = uv_now(c->srv->loop);
    arm_timer(c, c->srv->limits.header_timeout_ms);
    return 0;
}

static int hbuf_append(struct cmx_http_conn *c, const char *at, size_t len, bool lower)
{
    char *dst = cmx_buf_reserve(&c->hbuf, len + 1);
    if (dst == NULL) {
        c->pending_error = 431;
        return -1;
    }
    if (lower)
        for (size_t i = 0; i < len; i++)
            dst[i] = (char)tolower((unsigned char)at[i]);
    else
        memcpy(dst, at, len);
    cmx_buf_commit(&c->hbuf, len);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct cmx_http_conn *c = p->data;
    if (c->url_len == 0)
        c->url_off = (uint32_t)c->hbuf.len;
    c->url_len += (uint32_t)len;
    return hbuf_append(c, at, len, false);
}

static struct hdr_off *cur_hdr(struct cmx_http_conn *c)
{
    return (struct hdr_off *)(c->hoffs.data + c->hoffs.len - sizeof(struct hdr_off));
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct cmx_http_conn *c = p->data;
    if (c->hoffs.len == 0 || c->last_was_value) {
        if (c->hoffs.len == 0 && c->url_len > 0 && cmx_buf_append(&c->hbuf, "", 1) != 0)
            return c->pending_error = 431, -1;
        else if (c->hoffs.len > 0 && cmx_buf_append(&c->hbuf, "", 1) != 0)
            return c->pending_error = 431, -1; /* terminates the previous value */
        struct hdr_off h = {(uint32_t)c->hbuf.len, 0, 0, 0};
        if (cmx_buf_append(&c->hoffs, &h, sizeof(h)) != 0)
            return c->pending_error = 431, -1;
        c->last_was_value = false;
    }
    cur_hdr(c)->name_len += (uint32_t)len;
    return hbuf_append(c, at, len, true);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct cmx_http_conn *c = p->data;
    if (c->hoffs.len == 0)
        return 0;
    struct hdr_off *h = cur_hdr(c);
    if (!c->last_was_value) {
        if (cmx_buf_append(&c->hbuf, "", 1) != 0)
            return c->pending_error = 431, -1;
        h = cur_hdr(c);
        h->value = (uint32_t)c->hbuf.len;
        c->last_was_value = true;
    }
    h->value_len += (uint32_t)len;
    return hbuf_append(c, at, len, false);
}

static int on_headers_complete(http_parser *p)
{
    struct cmx_http_conn *c = p->data;
    struct cmx_http_req *req = &c->req;
    if (c->url_len == 0 && cmx_buf_append(&c->hbuf, "/", 1) != 0)
        return c->pending_error = 431, -1;
    if (cmx_buf_append(&c->hbuf, "", 1) != 0)
        return c->pending_error = 431, -1;
    if (c->hoffs.len > 0 && !c->last_was_value) {
        /* a name without a value: give it an empty one */
        struct hdr_off *h = cur_hdr(c);
        h->value = (uint32_t)c->hbuf.len - 1;
    }
    /* hbuf no longer grows for this request: pointers into it stay valid */
    char *base = c->hbuf.data;
    size_t n = c->hoffs.len / sizeof(struct hdr_off);
    req->headers = cmx_arena_alloc(&req->arena, (n ? n : 1) * sizeof(*req->headers));
    if (req->headers == NULL)
        return c->pending_error = 500, -1;
    const struct hdr_off *offs = (const struct hdr_off *)c->hoffs.data;
    for (size_t i = 0; i < n; i++) {
        struct cmx_http_header *h = &req->headers[i];
        h->name = base + offs[i].name;
        h->name_len = offs[i].name_len;
        char *v = base + offs[i].value;
        size_t vl = offs[i].value_len;
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        while (vl > 0 && (*v == ' ' || *v == '\t'))
            v++, vl--;
        v[vl] = '\0';
        h->value = v;
        h->value_len = vl;
    }
    req->n_headers = n;
    /* the URL: split path and query (URL is NUL-terminated by the first header's name
     * terminator or by the byte appended above) */
    char *url = base + c->url_off;
    url[c->url_len] = '\0';
    char *q = strchr(url, '?');
    if (q != NULL) {
        *q = '\0';
        req->query = q + 1;
    } else {
        req->query = "";
    }
    char *frag = strchr(q ? q + 1 : url, '#');
    if (frag != NULL)
        *frag = '\0';
    req->path = url;
    req->path_len = strlen(url);
    req->method = map_method(p->method);
    req->method_name = http_method_str((enum http_method)p->method);
    req->keep_alive = http_should_keep_alive(p) != 0;
    c->http10 = p->http_major == 1 && p->http_minor == 0;
    c->head_request = p->method == HTTP_HEAD;

    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body_bytes)
        return c->pending_error = 413, -1;
    const struct cmx_http_header *exp = cmx_http_find_header(req, "expect");
    if (exp != NULL) {
        if (strcasecmp(exp->value, "100-continue") != 0)
            return c->pending_error = 417, -1;
        if (!c->http10) {
            uv_buf_t b = uv_buf_init((char *)"HTTP/1.1 100 Continue\r\n\r\n", 25);
            conn_writev(c, &b, 1);
        }
    }
    c->state = CONN_BODY;
    arm_timer(c, c->srv->limits.body_timeout_ms);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct cmx_http_conn *c = p->data;
    int r = cmx_buf_append(&c->req.body, at, len);
    if (r != 0) {
        c->pending_error = r == CMX_ETOOBIG ? 413 : 500;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct cmx_http_conn *c = p->data;
    if (c->req.body.data == NULL)
        cmx_buf_append(&c->req.body, "", 0);
    http_parser_pause(p, 1);
    return 0;
}

static void init_settings(void)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* Parses buffered input and dispatches complete requests, one at a time. */
static void process_input(struct cmx_http_conn *c)
{
    c->in_process = true;
    while (!c->closing && !c->req_active && c->in.len > 0) {
        size_t n = http_parser_execute(&c->parser, &settings, c->in.data, c->in.len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            cmx_buf_consume(&c->in, n);
            http_parser_pause(&c->parser, 0);
            dispatch(c);
            continue;
        }
        if (err != HPE_OK) {
            int status = c->pending_error ? c->pending_error : 400;
            if (err == HPE_HEADER_OVERFLOW)
                status = 431;
            if (status == 413)
                server_error(c, 413, "request_too_large",
                             "Request body exceeds the configured limit.");
            else if (status == 431)
                server_error(c, 431, "request_header_fields_too_large",
                             "Request line and headers exceed the configured limit.");
            else if (status == 417)
                server_error(c, 417, "expectation_failed",
                             "Only the 100-continue expectation is supported.");
            else
                server_error(c, status, "invalid_http", "Malformed HTTP request.");
            break;
        }
        cmx_buf_consume(&c->in, n);
    }
    c->in_process = false;
    /* resume reading if we had stopped because of the pipeline cap */
    if (!c->closing && !c->reading && !c->close_after && c->in.len < PIPELINE_CAP)
        read_start(c);
}

/* ---- connections --------------------------------------------------------------------- */

static void handle_closed_cb(uv_handle_t *h)
{
    struct cmx_http_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct cmx_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    cmx_arena_reset(&c->req.arena);
    cmx_buf_free(&c->req.body);
    cmx_buf_free(&c->in);
    cmx_buf_free(&c->hbuf);
    cmx_buf_free(&c->hoffs);
    free(c);
    maybe_server_done(s);
}

static void conn_close(struct cmx_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->req_active) {
        struct cmx_http_req *req = &c->req;
        bool was_finished = req->finished;
        req->finished = true;
        c->req_active = false;
        c->srv->inflight--;
        if (!was_finished && req->on_abort != NULL)
            req->on_abort(req);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
}

static void timer_cb(uv_timer_t *t)
{
    struct cmx_http_conn *c = t->data;
    switch (c->state) {
    case CONN_HEADERS:
    case CONN_BODY:
        server_error(c, 408, "request_timeout", "Timed out reading the request.");
        if (!c->closing && c->write_pending == 0)
            conn_close(c);
        break;
    case CONN_IDLE:
        conn_close(c);
        break;
    case CONN_INFLIGHT:
        break;
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cmx_http_conn *c = h->data;
    char *p = cmx_buf_reserve(&c->in, READ_CHUNK);
    if (p == NULL) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = p;
    buf->len = READ_CHUNK;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct cmx_http_conn *c = stream->data;
    if (nread < 0) {
        /* EOF or error: a client that hangs up while its request is in flight cancels it */
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    cmx_buf_commit(&c->in, (size_t)nread);
    if (c->state == CONN_BODY) /* restart the body timeout on progress */
        arm_timer(c, c->srv->limits.body_timeout_ms);
    if (c->req_active) {
        /* pipelined input waits; stop reading when too much is queued */
        if (c->in.len >= PIPELINE_CAP) {
            uv_read_stop(stream);
            c->reading = false;
        }
        return;
    }
    process_input(c);
}

static void read_start(struct cmx_http_conn *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->reading = true;
}

static void accept_cb(uv_stream_t *listener, int status)
{
    struct cmx_http_server *s = listener->data;
    if (status < 0 || s->draining || s->closing)
        return;
    struct cmx_http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->handles_open = 1;
        c->closing = true;
        c->prev = NULL;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        c->timer.data = c;
        uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    cmx_buf_init(&c->in, PIPELINE_CAP + READ_CHUNK + s->limits.max_header_bytes);
    cmx_buf_init(&c->hbuf, s->limits.max_header_bytes);
    cmx_buf_init(&c->hoffs, 1u << 20);
    cmx_arena_init(&c->req.arena);
    cmx_buf_init(&c->req.body, s->limits.max_body_bytes);
    c->req.conn = c;
    reset_request(c);
    c->state = CONN_IDLE;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    arm_timer(c, s->limits.header_timeout_ms);
    read_start(c);
}

/* ---- server ---------------------------------------------------------------------------- */

static void maybe_server_done(struct cmx_http_server *s)
{
    if (s->n_conns > 0 || s->listening)
        return;
    if (s->drain_cb != NULL) {
        void (*cb)(void *) = s->drain_cb;
        s->drain_cb = NULL;
        cb(s->drain_arg); /* may close (and so free) the server: touch nothing after */
        return;
    }
    if (s->freed_pending) {
        cmx_buf_free(&s->scratch);
        free(s);
    }
}

int cmx_http_server_start(uv_loop_t *loop, const char *host, int port,
                          const struct cmx_http_limits *limits, cmx_http_handler_cb handler,
                          void *ud, struct cmx_http_server **out)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, init_settings);
    struct sockaddr_storage addr;
    int r;
    if (strchr(host, ':') != NULL)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        r = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (r != 0)
        return r;
    struct cmx_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CMX_ENOMEM;
    s->loop = loop;
    s->limits = *limits;
    s->handler = handler;
    s->ud = ud;
    cmx_buf_init(&s->scratch, 1u << 20);
    r = uv_tcp_init_ex(loop, &s->listener, addr.ss_family);
    if (r != 0) {
        free(s);
        return r;
    }
    s->listener.data = s;
    s->listening = true;
    uv_os_fd_t fd;
    int one = 1;
    if ((r = uv_fileno((uv_handle_t *)&s->listener, &fd)) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        r = uv_translate_sys_error(errno);
    if (r == 0)
        r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->listener, 4096, accept_cb);
    if (r != 0) {
        s->freed_pending = true;
        cmx_http_server_close(s);
        return r;
    }
    *out = s;
    return 0;
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct cmx_http_server *s = h->data;
    s->listening = false;
    maybe_server_done(s);
}

static void close_listener(struct cmx_http_server *s)
{
    if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
}

void cmx_http_server_on_reject(struct cmx_http_server *s, cmx_http_reject_cb reject)
{
    s->reject = reject;
}

void cmx_http_server_drain(struct cmx_http_server *s, void (*done_cb)(void *), void *arg)
{
    s->draining = true;
    s->drain_cb = done_cb;
    s->drain_arg = arg;
    close_listener(s);
    /* idle connections go now; busy ones close after their answer */
    struct cmx_http_conn *c = s->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (!c->req_active && c->state == CONN_IDLE && c->write_pending == 0)
            conn_close(c);
        else
            c->close_after = true;
    }
    maybe_server_done(s);
}

void cmx_http_server_close(struct cmx_http_server *s)
{
    s->closing = true;
    s->drain_cb = NULL; /* a forced stop ends any drain: nobody waits for it any more */
    s->freed_pending = true;
    close_listener(s);
    struct cmx_http_conn *c = s->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
    maybe_server_done(s);
}

size_t cmx_http_server_inflight(const struct cmx_http_server *s)
{
    return s->inflight;
}
