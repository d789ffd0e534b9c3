/* The upstream client on libcurl's multi_socket API, driven by the worker's libuv loop:
 * curl tells us which sockets to watch (uv_poll) and when to wake it (uv_timer); we tell
 * curl what happened with curl_multi_socket_action(), never from inside a curl callback.
 * The multi handle owns the connection pool, so there is one per worker.
 *
 * Timeouts curl does not have are ours: one uv_timer per transfer covers "first byte"
 * (request start to response head) and then "idle" (silence between body bytes). */
#include "upstream/upstream.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESP_HEADERS  (64u * 1024)
#define MAX_HEADER_FIELDS 128

struct sockctx {
    uv_poll_t poll;       /* watches fd for curl */
    struct sockctx *prev; /* u->socks list */
    struct sockctx *next;
    curl_socket_t fd;       /* the socket */
    struct cmx_upstream *u; /* owner */
    int events;             /* UV_READABLE|UV_WRITABLE currently requested */
};

struct cmx_upstream {
    uv_loop_t *loop;  /* the worker's loop */
    CURLM *multi;     /* owns the connection pool */
    uv_timer_t timer; /* curl's timeout */
    CURL **idle;      /* easy handles kept for reuse */
    size_t n_idle, cap_idle;
    struct cmx_upstream_xfer *xfers; /* transfers in progress */
    struct sockctx *socks;           /* sockets being watched */
    int handles_open;                /* handles to close before done() */
    bool destroying;                 /* destroy() called */
    void (*done)(void *);            /* destroy() completion */
    void *done_arg;
};

struct cmx_upstream_xfer {
    struct cmx_upstream *u;         /* owner */
    struct cmx_upstream_xfer *prev; /* u->xfers list */
    struct cmx_upstream_xfer *next;
    CURL *easy;                      /* NULL once detached */
    struct curl_slist *hdrs;         /* request headers */
    struct cmx_upstream_request req; /* copy of the caller's request */
    uv_timer_t timer;                /* first-byte, then idle timeout */
    struct cmx_buf hbuf;             /* raw header lines of the current response */
    int status;                      /* final status once known */
    bool got_headers;                /* on_headers delivered */
    bool first_byte;                 /* any response byte arrived */
    bool aborted;                    /* a callback asked to stop */
    bool canceled;                   /* cancel() called: no more callbacks */
    bool finished;                   /* on_done delivered or canceled */
    bool paused;                     /* curl receive is paused */
    int timeout_err;                 /* our timer fired: the error to report */
};

static void check_multi_info(struct cmx_upstream *u);

int cmx_upstream_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : CMX_EINTERNAL;
}

/* ---- loop glue ------------------------------------------------------------------------- */

static void socket_action(struct cmx_upstream *u, curl_socket_t fd, int flags)
{
    int running;
    curl_multi_socket_action(u->multi, fd, flags, &running);
    check_multi_info(u);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct sockctx *sc = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    socket_action(sc->u, sc->fd, flags);
}

static void handle_closed(uv_handle_t *h);

static void sock_closed_cb(uv_handle_t *h)
{
    struct sockctx *sc = h->data;
    struct cmx_upstream *u = sc->u;
    free(sc);
    handle_closed((uv_handle_t *)&u->timer);
}

static void sock_close(struct cmx_upstream *u, struct sockctx *sc)
{
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        u->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    uv_poll_stop(&sc->poll);
    uv_close((uv_handle_t *)&sc->poll, sock_closed_cb);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct cmx_upstream *u = userp;
    struct sockctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc != NULL) {
            sock_close(u, sc);
            if (!u->destroying)
                curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    if (u->destroying)
        return -1;
    if (sc == NULL) {
        sc = calloc(1, sizeof(*sc));
        if (sc == NULL)
            return -1;
        sc->fd = fd;
        sc->u = u;
        if (uv_poll_init_socket(u->loop, &sc->poll, fd) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        u->handles_open++;
        sc->next = u->socks;
        if (u->socks)
            u->socks->prev = sc;
        u->socks = sc;
        curl_multi_assign(u->multi, fd, sc);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    /* only touch epoll when the wanted events change */
    if (ev != sc->events) {
        uv_poll_start(&sc->poll, ev, poll_cb);
        sc->events = ev;
    }
    return 0;
}

static void curl_timer_cb(uv_timer_t *t)
{
    struct cmx_upstream *u = t->data;
    socket_action(u, CURL_SOCKET_TIMEOUT, 0);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cmx_upstream *u = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&u->timer);
    else /* 0 means "as soon as possible": the next loop iteration, never from here */
        uv_timer_start(&u->timer, curl_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- transfers -------------------------------------------------------------------------- */

static void xfer_timer_closed(uv_handle_t *h)
{
    struct cmx_upstream_xfer *x = h->data;
    struct cmx_upstream *u = x->u;
    cmx_buf_free(&x->hbuf);
    free(x);
    handle_closed((uv_handle_t *)&u->timer);
}

/* Detaches the easy handle (back to the idle list) and frees x once its timer closed. */
static void xfer_release(struct cmx_upstream_xfer *x)
{
    struct cmx_upstream *u = x->u;
    if (x->easy != NULL) {
        if (u->multi != NULL)
            curl_multi_remove_handle(u->multi, x->easy);
        if (!u->destroying && u->n_idle < 256) {
            if (u->n_idle == u->cap_idle) {
                size_t cap = u->cap_idle ? u->cap_idle * 2 : 16;
                CURL **p = realloc(u->idle, cap * sizeof(*p));
                if (p != NULL) {
                    u->idle = p;
                    u->cap_idle = cap;
                }
            }
            if (u->n_idle < u->cap_idle)
                u->idle[u->n_idle++] = x->easy;
            else
                curl_easy_cleanup(x->easy);
        } else {
            curl_easy_cleanup(x->easy);
        }
        x->easy = NULL;
    }
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    if (x->prev)
        x->prev->next = x->next;
    else
        u->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    uv_timer_stop(&x->timer);
    uv_close((uv_handle_t *)&x->timer, xfer_timer_closed);
}

static void xfer_finish(struct cmx_upstream_xfer *x, int err)
{
    if (x->finished)
        return;
    x->finished = true;
    bool fb = x->first_byte;
    bool notify = !x->canceled;
    void *ud = x->req.ud;
    void (*on_done)(void *, int, bool) = x->req.on_done;
    xfer_release(x);
    if (notify)
        on_done(ud, err, fb);
}

static void xfer_timeout_cb(uv_timer_t *t)
{
    struct cmx_upstream_xfer *x = t->data;
    xfer_finish(x, CMX_ETIMEOUT);
}

static int map_curl_error(struct cmx_upstream_xfer *x, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return CMX_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connect_us = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        return connect_us == 0 && !x->first_byte ? CMX_ECONNECT : CMX_ETIMEOUT;
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return CMX_ETLS;
    case CURLE_WRITE_ERROR:
        return x->aborted ? CMX_ECANCELED : CMX_EIO;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return CMX_ERESET;
    default:
        return CMX_EUPSTREAM;
    }
}

static void check_multi_info(struct cmx_upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct cmx_upstream_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x == NULL)
            continue;
        int err = map_curl_error(x, msg->data.result);
        if (err == 0 && !x->got_headers)
            err = CMX_EUPSTREAM;
        xfer_finish(x, err);
    }
}

/* Parses the collected header lines of the final response into an array and hands them
 * to on_headers. Names are lower-cased, values trimmed. */
static int deliver_headers(struct cmx_upstream_xfer *x)
{
    struct cmx_http_header hs[MAX_HEADER_FIELDS];
    size_t n = 0;
    char *p = x->hbuf.data, *end = p + x->hbuf.len;
    /* skip the status line */
    char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end;
    while (p < end && n < MAX_HEADER_FIELDS) {
        nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *line_end = le;
        if (line_end > p && line_end[-1] == '\r')
            line_end--;
        char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && colon > p) {
            for (char *q = p; q < colon; q++)
                *q = (char)tolower((unsigned char)*q);
            *colon = '\0';
            char *v = colon + 1;
            while (v < line_end && (*v == ' ' || *v == '\t'))
                v++;
            char *ve = line_end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *ve = '\0';
            hs[n].name = p;
            hs[n].name_len = (size_t)(colon - p);
            hs[n].value = v;
            hs[n].value_len = (size_t)(ve - v);
            n++;
        }
        p = nl ? nl + 1 : end;
    }
    x->got_headers = true;
    return x->req.on_headers(x->req.ud, x->status, hs, n);
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    struct cmx_upstream_xfer *x = userp;
    size_t len = size * nitems;
    if (x->canceled || x->aborted)
        return 0;
    x->first_byte = true;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* a new response head (after 100 Continue, or the first) */
        cmx_buf_reset(&x->hbuf);
        const char *sp = memchr(buf, ' ', len);
        x->status = sp ? atoi(sp + 1) : 0;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (x->status >= 200 && !x->got_headers) {
            if (deliver_headers(x) != 0 || x->canceled) {
                x->aborted = true;
                return 0;
            }
            if (x->req.idle_timeout_ms > 0)
                uv_timer_start(&x->timer, xfer_timeout_cb, (uint64_t)x->req.idle_timeout_ms, 0);
            else
                uv_timer_stop(&x->timer);
        }
        return len;
    }
    if (cmx_buf_append(&x->hbuf, buf, len) != 0) {
        x->aborted = true;
        return 0;
    }
    return len;
}

static size_t write_cb(char *buf, size_t size, size_t nmemb, void *userp)
{
    struct cmx_upstream_xfer *x = userp;
    size_t len = size * nmemb;
    if (x->canceled || x->aborted)
        return 0;
    x->first_byte = true;
    if (x->req.idle_timeout_ms > 0)
        uv_timer_start(&x->timer, xfer_timeout_cb, (uint64_t)x->req.idle_timeout_ms, 0);
    if (x->req.on_data(x->req.ud, buf, len) != 0 || x->canceled) {
        x->aborted = true;
        return 0;
    }
    return len;
}

static int curl_create(uv_loop_t *loop, struct cmx_upstream **out)
{
    struct cmx_upstream *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return CMX_ENOMEM;
    u->loop = loop;
    u->multi = curl_multi_init();
    if (u->multi == NULL) {
        free(u);
        return CMX_ENOMEM;
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    u->handles_open = 1;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    *out = u;
    return 0;
}

static int curl_start(struct cmx_upstream *u, const struct cmx_upstream_request *req,
                      struct cmx_upstream_xfer **out)
{
    if (u->destroying)
        return CMX_ECANCELED;
    struct cmx_upstream_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return CMX_ENOMEM;
    x->u = u;
    x->req = *req;
    cmx_buf_init(&x->hbuf, MAX_RESP_HEADERS);
    CURL *e = u->n_idle > 0 ? u->idle[--u->n_idle] : curl_easy_init();
    if (e == NULL) {
        free(x);
        return CMX_ENOMEM;
    }
    curl_easy_reset(e);
    x->easy = e;
    for (size_t i = 0; i < req->n_headers; i++) {
        struct curl_slist *l = curl_slist_append(x->hdrs, req->headers[i]);
        if (l == NULL)
            goto out_nomem;
        x->hdrs = l;
    }
    /* curl would add these on its own; an upstream gets exactly what we mean to send */
    static const char *const suppress[] = {"Expect:", "Accept:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *l = curl_slist_append(x->hdrs, suppress[i]);
        if (l == NULL)
            goto out_nomem;
        x->hdrs = l;
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "cloudmux/" CMX_VERSION);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    if (req->connect_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    if (req->total_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->total_timeout_ms);
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    uv_timer_init(u->loop, &x->timer);
    x->timer.data = x;
    u->handles_open++;
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        x->easy = NULL;
        x->finished = true;
        xfer_release(x); /* frees x via the timer close */
        return CMX_EINTERNAL;
    }
    if (req->first_byte_timeout_ms > 0)
        uv_timer_start(&x->timer, xfer_timeout_cb, (uint64_t)req->first_byte_timeout_ms, 0);
    x->next = u->xfers;
    if (u->xfers)
        u->xfers->prev = x;
    u->xfers = x;
    *out = x;
    return 0;

out_nomem:
    curl_slist_free_all(x->hdrs);
    curl_easy_cleanup(e);
    cmx_buf_free(&x->hbuf);
    free(x);
    return CMX_ENOMEM;
}

static void curl_cancel(struct cmx_upstream_xfer *x)
{
    if (x == NULL || x->finished)
        return;
    x->canceled = true;
    x->aborted = true;
    /* Removing an easy handle from inside one of its own callbacks is not allowed: the
     * write/header callback sees the flag and fails the transfer, and check_multi_info()
     * releases it; on_done is not called because canceled is set. Otherwise release now. */
    if (x->easy != NULL) {
        /* We cannot tell here whether curl is on the stack; curl 7.88 allows
         * curl_multi_remove_handle from callbacks of *other* handles only, so defer to a
         * zero timer which runs from the loop. */
        uv_timer_start(&x->timer, xfer_timeout_cb, 0, 0);
    }
}

static void curl_pause(struct cmx_upstream_xfer *x, bool paused)
{
    if (x == NULL || x->finished || x->easy == NULL || x->paused == paused)
        return;
    x->paused = paused;
    curl_easy_pause(x->easy, paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
}

static void handle_closed(uv_handle_t *h)
{
    struct cmx_upstream *u = h->data;
    if (--u->handles_open > 0 || !u->destroying)
        return;
    free(u->idle);
    void (*done)(void *) = u->done;
    void *arg = u->done_arg;
    free(u);
    if (done != NULL)
        done(arg);
}

static void curl_destroy(struct cmx_upstream *u, void (*done)(void *), void *arg)
{
    u->destroying = true;
    u->done = done;
    u->done_arg = arg;
    while (u->xfers != NULL) {
        struct cmx_upstream_xfer *x = u->xfers;
        x->canceled = true;
        x->finished = true;
        xfer_release(x);
    }
    /* closing the pooled connections may make curl drop their sockets itself; whatever
     * it still had watched is closed here */
    curl_multi_cleanup(u->multi);
    u->multi = NULL;
    for (size_t i = 0; i < u->n_idle; i++)
        curl_easy_cleanup(u->idle[i]);
    u->n_idle = 0;
    while (u->socks != NULL)
        sock_close(u, u->socks);
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, handle_closed);
}

const struct cmx_upstream_ops cmx_upstream_curl = {
    .name = "curl",
    .create = curl_create,
    .start = curl_start,
    .cancel = curl_cancel,
    .pause = curl_pause,
    .destroy = curl_destroy,
};
