/* A lean HTTP/1.1 upstream client on the worker's libuv loop, for http:// URLs; https:// (and
 * anything else it does not handle) goes to the libcurl client behind the same interface.
 *
 * Why: libcurl's multi_socket API costs ~5 epoll_ctl calls per request through uv_poll
 * re-arming (docs/notes/STACK-NOTES.md). Here a pooled connection keeps reading all the time
 * (a server-side close is noticed while it is idle), a request is one uv_try_write (writev of
 * head and body), and nothing touches epoll per request.
 *
 * Pieces: a host entry per host:port holds the resolved addresses (uv_getaddrinfo only for
 * names, cached DNS_TTL_MS) and the idle connections (LIFO). A connection owns one uv_tcp_t,
 * one uv_timer_t (every timeout of whatever it is doing), an http-parser in HTTP_RESPONSE
 * mode and its scratch buffers, all reused from request to request. A transfer points at its
 * connection; only the final response reaches the callbacks.
 *
 * Reentrancy: user callbacks run either from parser callbacks (on_headers, on_data) or from
 * the loop (on_done, held data). After each one we check that the connection still carries
 * the same transfer (cancel() detaches it and closes the connection); on_done is always the
 * last thing we do, after the connection went back to the pool or started closing. */
#include "upstream/upstream.h"
#include "core/fmt.h"
#include "core/buf.h"
#include "core/err.h"

#include <http_parser.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESP_HEADERS  (64u * 1024) /* response head bytes we keep */
#define MAX_HEADER_FIELDS 128          /* fields passed to on_headers; the rest are dropped */
#define MAX_REQ_HEAD      (1u << 20)   /* request line + headers */
#define MAX_HELD          (1u << 20)   /* body bytes parsed while paused (one read at most) */
#define READ_BUF          (64u * 1024) /* one per client: reads are consumed at once */
#define POOL_IDLE_MS      60000        /* an idle pooled connection is closed after this */
#define POOL_MAX_IDLE     256          /* idle connections kept per host:port */
#define DNS_TTL_MS        30000        /* resolved addresses are reused this long */
#define MAX_ADDRS         4            /* addresses tried in turn when connecting */
#define HOST_BUCKETS      256          /* hash buckets of host entries */
#define MAX_HOSTS         1024         /* idle host entries are evicted beyond this */
#define MAX_FREE_XFERS    1024         /* transfer structs kept for reuse */

/* Under ASan transfers are freed for real so that a use after on_done/cancel shows. */
#if defined(__SANITIZE_ADDRESS__)
#define NO_RECYCLE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_RECYCLE 1
#endif
#endif

enum conn_state {
    C_RESOLVING,  /* waiting for the host's addresses (on host->waiting) */
    C_CONNECTING, /* uv_tcp_connect in flight */
    C_ACTIVE,     /* carrying a transfer: request out, response coming */
    C_IDLE,       /* in the pool (on host->idle), still reading */
    C_CLOSING,    /* handles closing; freed by the last close callback */
};

enum hdr_state { H_NONE, H_FIELD, H_VALUE };

union addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct h1;
struct conn;

struct host {
    struct host *next;           /* hash bucket chain */
    struct conn *idle;           /* pooled connections, most recently used first */
    struct conn *waiting;        /* connections waiting for the resolver */
    struct resolve *resolving;   /* getaddrinfo in flight, NULL when none */
    size_t n_idle;               /* length of idle */
    size_t n_conns;              /* connections not closing (an entry in use is never evicted) */
    uint64_t expires;            /* loop ms when addrs go stale; UINT64_MAX for IP literals */
    union addr addrs[MAX_ADDRS]; /* resolved addresses, port set */
    int n_addrs;                 /* valid entries in addrs */
    uint32_t hash;               /* of name and port */
    uint16_t port;               /* TCP port */
    size_t name_len;             /* length of name */
    char name[];                 /* host name or IP literal (no brackets), NUL-terminated */
};

struct resolve {
    uv_getaddrinfo_t req; /* the lookup */
    struct h1 *u;         /* owner */
    struct host *host;    /* whose addresses; NULL once the client is being destroyed */
};

struct xfer {
    struct cmx_upstream_request req; /* the caller's copy */
    struct h1 *u;                    /* owner */
    struct conn *c;                  /* h1: the connection carrying it */
    struct cmx_upstream_xfer *inner; /* curl: the delegated transfer */
    struct xfer *prev;               /* curl: u->wrapped list */
    struct xfer *next;               /* curl: u->wrapped list; free list */
    const char *path;                /* request target in req.url after its first '/' */
    size_t path_len;                 /* its length (up to '#') */
    const char *authority;           /* host as written in the URL ("[::1]" for IPv6) */
    size_t authority_len;            /* its length */
    uint64_t t_connect;              /* loop ms deadline for connecting (0: none) */
    uint64_t t_first_byte;           /* loop ms deadline for the response head (0: none) */
    uint64_t t_total;                /* loop ms deadline for everything (0: none) */
    uint16_t port;                   /* for the Host header */
    bool curl;                       /* delegated to the curl client */
    bool head_only;                  /* HEAD: the response has no body */
    bool first_byte;                 /* a response byte arrived */
    bool paused;                     /* pause(true) in effect */
    bool retried;                    /* already moved once off a stale pooled connection */
};

struct conn {
    uv_tcp_t tcp;          /* the socket */
    uv_timer_t timer;      /* every timeout of this connection, and deferred work */
    uv_connect_t creq;     /* connect request */
    uv_write_t wreq;       /* the request's write when uv_try_write did not take it all */
    http_parser parser;    /* response parser, re-initialised per request */
    struct h1 *u;          /* owner */
    struct host *host;     /* where it goes */
    struct conn *prev;     /* host->idle or host->waiting, per state */
    struct conn *next;     /* same */
    struct conn *aprev;    /* u->conns */
    struct conn *anext;    /* u->conns */
    struct xfer *x;        /* the transfer it carries, NULL when none */
    struct cmx_buf head;   /* request head, reused */
    struct cmx_buf hdrs;   /* response header fields as "name\0value\0" pairs, reused */
    struct cmx_buf held;   /* body bytes parsed while paused, delivered on resume */
    uint64_t last_read;    /* loop ms of the last read (idle timeout) */
    uint64_t idle_since;   /* loop ms it went into the pool */
    uint64_t timer_due;    /* loop ms the timer fires at, 0 when it is not running */
    unsigned requests;     /* responses completed on it: > 0 means reused */
    enum conn_state state; /* see enum conn_state */
    enum hdr_state hstate; /* which header callback came last */
    int closes;            /* close callbacks still to come */
    int pending_err;       /* error to end the transfer with (deferred or from a callback) */
    int end_err;           /* how the response ended, once msg_done */
    int addr_idx;          /* which of host->addrs this connection uses */
    bool reading;          /* uv_read_start in effect */
    bool write_pending;    /* the request is not fully written */
    bool head_done;        /* final response head delivered */
    bool complete;         /* the parser saw the final response's end */
    bool msg_done;         /* response ended (end_err), delivery waits for a resume */
    bool keep_alive;       /* the response allows reuse */
    bool no_reuse;         /* something makes reuse unsafe (extra bytes, write error) */
    bool kick;             /* the timer fires to deliver held data */
    bool fake;             /* driven by cmx_upstream_h1_feed: no socket */
};

struct h1 {
    uv_loop_t *loop;                  /* the worker's loop */
    struct cmx_upstream *curl;        /* https and everything else */
    struct host *hosts[HOST_BUCKETS]; /* host entries by hash */
    size_t n_hosts;                   /* entries in hosts */
    struct conn *conns;               /* connections not closing */
    struct xfer *wrapped;             /* transfers delegated to curl */
    struct xfer *free_xfers;          /* recycled transfer structs */
    size_t n_free;                    /* length of free_xfers */
    int pending;                      /* connections, lookups and the curl client alive */
    bool proxy_env;                   /* http_proxy set: leave everything to curl */
    bool destroying;                  /* destroy() called */
    void (*done)(void *);             /* destroy() completion */
    void *done_arg;                   /* its argument */
    char rbuf[READ_BUF];              /* read buffer, shared by all connections */
};

static void timer_cb(uv_timer_t *t);
static void conn_begin(struct conn *c);
static void send_request(struct conn *c);

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ms(const struct h1 *u)
{
    return uv_now(u->loop);
}

static uint64_t deadline(uint64_t now, int ms)
{
    return ms > 0 ? now + (uint64_t)ms : 0;
}

static void unpend(struct h1 *u);

static struct xfer *xfer_alloc(struct h1 *u)
{
    struct xfer *x = u->free_xfers;
    if (x != NULL) {
        u->free_xfers = x->next;
        u->n_free--;
        memset(x, 0, sizeof(*x));
    } else {
        x = calloc(1, sizeof(*x));
        if (x == NULL)
            return NULL;
    }
    x->u = u;
    return x;
}

static void xfer_free(struct h1 *u, struct xfer *x)
{
#ifdef NO_RECYCLE
    (void)u;
    free(x);
#else
    if (u->n_free >= MAX_FREE_XFERS || u->destroying) {
        free(x);
        return;
    }
    x->next = u->free_xfers;
    u->free_xfers = x;
    u->n_free++;
#endif
}

/* ---- hosts: addresses and the pool ------------------------------------------------------------
 */

static uint32_t host_hash(const char *s, size_t n, uint16_t port)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    return (h ^ (port >> 8)) * 16777619u;
}

/* Frees host entries nobody uses, so that a stream of distinct hosts cannot grow the table
 * without bound. */
static void hosts_evict(struct h1 *u)
{
    for (size_t b = 0; b < HOST_BUCKETS; b++) {
        struct host **pp = &u->hosts[b];
        while (*pp != NULL) {
            struct host *h = *pp;
            if (h->n_conns == 0 && h->resolving == NULL && h->waiting == NULL) {
                *pp = h->next;
                free(h);
                u->n_hosts--;
            } else {
                pp = &h->next;
            }
        }
    }
}

static struct host *host_get(struct h1 *u, const char *name, size_t len, uint16_t port)
{
    uint32_t hv = host_hash(name, len, port);
    for (struct host *h = u->hosts[hv % HOST_BUCKETS]; h != NULL; h = h->next)
        if (h->hash == hv && h->port == port && h->name_len == len &&
            memcmp(h->name, name, len) == 0)
            return h;
    if (u->n_hosts >= MAX_HOSTS)
        hosts_evict(u);
    struct host *h = calloc(1, sizeof(*h) + len + 1);
    if (h == NULL)
        return NULL;
    memcpy(h->name, name, len);
    h->name_len = len;
    h->port = port;
    h->hash = hv;
    /* IP literals need no lookup and never go stale */
    if (uv_ip4_addr(h->name, port, &h->addrs[0].in) == 0 ||
        (memchr(h->name, ':', len) != NULL && uv_ip6_addr(h->name, port, &h->addrs[0].in6) == 0)) {
        h->n_addrs = 1;
        h->expires = UINT64_MAX;
    }
    h->next = u->hosts[hv % HOST_BUCKETS];
    u->hosts[hv % HOST_BUCKETS] = h;
    u->n_hosts++;
    return h;
}

static void list_push(struct conn **head, struct conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head != NULL)
        (*head)->prev = c;
    *head = c;
}

static void list_remove(struct conn **head, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* ---- connections ------------------------------------------------------------------------------
 */

static struct conn *conn_new(struct h1 *u, struct host *h)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if (uv_tcp_init(u->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(u->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->u = u;
    c->host = h;
    c->state = C_CONNECTING;
    cmx_buf_init(&c->head, MAX_REQ_HEAD);
    cmx_buf_init(&c->hdrs, MAX_RESP_HEADERS);
    cmx_buf_init(&c->held, MAX_HELD);
    c->anext = u->conns;
    if (u->conns != NULL)
        u->conns->aprev = c;
    u->conns = c;
    h->n_conns++;
    u->pending++;
    return c;
}

static void conn_closed_cb(uv_handle_t *hd)
{
    struct conn *c = hd->data;
    if (--c->closes > 0)
        return;
    struct h1 *u = c->u;
    cmx_buf_free(&c->head);
    cmx_buf_free(&c->hdrs);
    cmx_buf_free(&c->held);
    free(c);
    unpend(u);
}

/* Closes c; whatever transfer it carried must have been dealt with (c->x is dropped). */
static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSING)
        return;
    struct h1 *u = c->u;
    if (c->state == C_IDLE) {
        list_remove(&c->host->idle, c);
        c->host->n_idle--;
    } else if (c->state == C_RESOLVING) {
        list_remove(&c->host->waiting, c);
    }
    if (c->aprev != NULL)
        c->aprev->anext = c->anext;
    else
        u->conns = c->anext;
    if (c->anext != NULL)
        c->anext->aprev = c->aprev;
    c->host->n_conns--;
    c->state = C_CLOSING;
    c->x = NULL;
    c->closes = 2;
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = hd->data;
    buf->base = c->u->rbuf;
    buf->len = READ_BUF;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(struct conn *c)
{
    if (c->reading || c->fake)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->reading = true;
}

static void stop_reading(struct conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* Makes the timer fire at due at the latest. A timer already due earlier is left alone:
 * timer_cb finds nothing expired and re-arms, which costs one wakeup, where moving it on
 * every request would cost timer heap work each time. */
static void arm_at(struct conn *c, uint64_t due)
{
    if (c->timer_due != 0 && c->timer_due <= due)
        return;
    uint64_t now = now_ms(c->u);
    c->timer_due = due > now ? due : now;
    uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
}

/* Arms the connection's one timer for the earliest deadline of what it is doing now.
 * The idle timeout is checked lazily: reads only note the time. */
static void rearm(struct conn *c)
{
    struct xfer *x = c->x;
    if (c->pending_err != 0 || c->kick) {
        arm_at(c, now_ms(c->u));
        return;
    }
    uint64_t due = x->t_total ? x->t_total : UINT64_MAX;
    if (c->state != C_ACTIVE) {
        if (x->t_connect && x->t_connect < due)
            due = x->t_connect;
        if (x->t_first_byte && x->t_first_byte < due)
            due = x->t_first_byte;
    } else if (!c->head_done) {
        if (x->t_first_byte && x->t_first_byte < due)
            due = x->t_first_byte;
    } else if (!x->paused && x->req.idle_timeout_ms > 0) {
        uint64_t idle = c->last_read + (uint64_t)x->req.idle_timeout_ms;
        if (idle < due)
            due = idle;
    }
    if (due != UINT64_MAX)
        arm_at(c, due); /* else a running timer fires once for nothing */
}

/* Ends the transfer later, from the loop: for errors found where no callback may run. */
static void fail_soon(struct conn *c, int err)
{
    c->pending_err = err;
    arm_at(c, now_ms(c->u));
}

/* Puts a connection whose response ended cleanly back into its host's pool. */
static void conn_idle(struct conn *c)
{
    struct host *h = c->host;
    c->requests++;
    if (h->n_idle >= POOL_MAX_IDLE) {
        conn_close(c);
        return;
    }
    c->state = C_IDLE;
    list_push(&h->idle, c);
    h->n_idle++;
    /* keep reading: a server-side close shows up as EOF and drops it from the pool */
    start_reading(c);
    c->idle_since = now_ms(c->u);
    arm_at(c, c->idle_since + POOL_IDLE_MS);
}

/* The end of c's transfer: the connection goes back to the pool or closes, then on_done is
 * the last thing that runs (it may start transfers, even on this connection). */
static void xfer_end(struct conn *c, int err)
{
    struct xfer *x = c->x;
    struct h1 *u = c->u;
    void *ud = x->req.ud;
    void (*on_done)(void *, int, bool) = x->req.on_done;
    bool fb = x->first_byte;
    c->x = NULL;
    c->pending_err = 0;
    c->kick = false;
    if (err == 0 && c->keep_alive && !c->no_reuse && !c->write_pending && !c->fake &&
        !u->destroying)
        conn_idle(c);
    else
        conn_close(c);
    xfer_free(u, x);
    on_done(ud, err, fb);
}

/* Moves c's transfer to a new connection to the same host (next address, or a fresh
 * connection after a stale pooled one) and closes c. No callback runs. */
static int conn_respawn(struct conn *c, int addr_idx)
{
    struct xfer *x = c->x;
    struct conn *nc = conn_new(c->u, c->host);
    if (nc == NULL)
        return CMX_ENOMEM;
    c->x = NULL;
    conn_close(c);
    nc->x = x;
    nc->addr_idx = addr_idx;
    x->c = nc;
    conn_begin(nc);
    return 0;
}

/* A reused connection that fails before any response byte most likely hit the keep-alive
 * race (the server closed it as we sent): try once more on a fresh connection. */
static bool retry_stale(struct conn *c)
{
    struct xfer *x = c->x;
    if (x->first_byte || x->retried || c->requests == 0 || c->fake || c->u->destroying)
        return false;
    x->retried = true;
    return conn_respawn(c, 0) == 0;
}

/* ---- resolving and connecting -----------------------------------------------------------------
 */

static void conn_connect(struct conn *c);

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *r = (struct resolve *)req;
    struct h1 *u = r->u;
    struct host *h = r->host;
    free(r);
    if (h == NULL || u->destroying) {
        uv_freeaddrinfo(res);
        unpend(u);
        return;
    }
    h->resolving = NULL;
    h->n_addrs = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai != NULL && h->n_addrs < MAX_ADDRS;
         ai = ai->ai_next) {
        union addr *a = &h->addrs[h->n_addrs];
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(a->in)) {
            memcpy(&a->in, ai->ai_addr, sizeof(a->in));
            a->in.sin_port = htons(h->port);
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(a->in6)) {
            memcpy(&a->in6, ai->ai_addr, sizeof(a->in6));
            a->in6.sin6_port = htons(h->port);
        } else {
            continue;
        }
        h->n_addrs++;
    }
    uv_freeaddrinfo(res);
    h->expires = h->n_addrs > 0 ? now_ms(u) + DNS_TTL_MS : 0;
    /* Take the whole list first: callbacks below may start transfers to this host. */
    struct conn *list = h->waiting;
    h->waiting = NULL;
    for (struct conn *c = list; c != NULL; c = c->next)
        c->state = C_CONNECTING;
    while (list != NULL && !u->destroying) {
        struct conn *c = list;
        list = c->next;
        c->prev = c->next = NULL;
        if (c->state != C_CONNECTING || c->x == NULL)
            continue; /* closed by a callback of an earlier one */
        if (h->n_addrs == 0) {
            xfer_end(c, CMX_ECONNECT);
        } else {
            c->addr_idx = 0;
            conn_connect(c);
        }
    }
    unpend(u);
}

static int resolve_start(struct h1 *u, struct host *h)
{
    struct resolve *r = malloc(sizeof(*r));
    if (r == NULL)
        return CMX_ENOMEM;
    r->u = u;
    r->host = h;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = uv_getaddrinfo(u->loop, &r->req, resolve_cb, h->name, NULL, &hints);
    if (rc != 0) {
        free(r);
        return CMX_ECONNECT;
    }
    h->resolving = r;
    u->pending++;
    return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->handle->data;
    if (c->state != C_CONNECTING || c->x == NULL)
        return; /* closed meanwhile (UV_ECANCELED) */
    if (status < 0) {
        if (c->addr_idx + 1 < c->host->n_addrs && conn_respawn(c, c->addr_idx + 1) == 0)
            return;
        xfer_end(c, CMX_ECONNECT);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    c->state = C_ACTIVE;
    if (!c->x->paused)
        start_reading(c);
    send_request(c);
}

static void conn_connect(struct conn *c)
{
    c->state = C_CONNECTING;
    if (c->addr_idx >= c->host->n_addrs)
        c->addr_idx = 0;
    if (uv_tcp_connect(&c->creq, &c->tcp, &c->host->addrs[c->addr_idx].sa, connect_cb) != 0) {
        fail_soon(c, CMX_ECONNECT);
        return;
    }
    rearm(c);
}

/* Starts a new connection for c->x: resolve if needed, then connect. Never calls back. */
static void conn_begin(struct conn *c)
{
    struct host *h = c->host;
    if (h->n_addrs > 0 && now_ms(c->u) < h->expires) {
        conn_connect(c);
        return;
    }
    c->state = C_RESOLVING;
    list_push(&h->waiting, c);
    if (h->resolving == NULL && resolve_start(c->u, h) != 0) {
        fail_soon(c, CMX_ECONNECT);
        return;
    }
    rearm(c);
}

/* ---- the request ----------------------------------------------------------------------------- */

static bool name_is(const char *line, size_t name_len, const char *name, size_t n)
{
    return name_len == n && strncasecmp(line, name, n) == 0;
}

/* Writes the request head into c->head. Host, Content-Length and User-Agent are ours unless
 * the caller gives Host or User-Agent; the caller's Content-Length, Transfer-Encoding and
 * Expect are dropped (the body is always sent whole, with its length). As with curl, a line
 * "Name:" with no value removes that header and "Name;" sends it empty. */
static int build_head(struct conn *c, struct xfer *x)
{
    const struct cmx_upstream_request *r = &x->req;
    struct cmx_buf *b = &c->head;
    bool own_host = true, own_ua = true;
    int rc = 0;

    for (size_t i = 0; i < r->n_headers; i++)
        if ((r->headers[i][0] | 0x20) == 'h' && strncasecmp(r->headers[i], "host:", 5) == 0)
            own_host = false;
    cmx_buf_reset(b);
    rc |= cmx_buf_puts(b, r->method);
    rc |= cmx_buf_append(b, " /", 2);
    rc |= cmx_buf_append(b, x->path, x->path_len);
    rc |= cmx_buf_append(b, " HTTP/1.1\r\n", 11);
    if (own_host) {
        rc |= cmx_buf_append(b, "Host: ", 6);
        rc |= cmx_buf_append(b, x->authority, x->authority_len);
        if (x->port != 80) {
            char num[8];
            int n = 0;
            unsigned p = x->port;
            do {
                num[7 - n++] = (char)('0' + p % 10);
                p /= 10;
            } while (p != 0);
            rc |= cmx_buf_append(b, ":", 1);
            rc |= cmx_buf_append(b, num + 8 - n, (size_t)n);
        }
        rc |= cmx_buf_append(b, "\r\n", 2);
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *line = r->headers[i];
        size_t len = strlen(line);
        const char *colon = memchr(line, ':', len);
        if (colon == NULL) {
            if (len > 1 && line[len - 1] == ';') {
                rc |= cmx_buf_append(b, line, len - 1);
                rc |= cmx_buf_append(b, ":\r\n", 3);
            }
            continue;
        }
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        bool empty = *v == '\0';
        switch (line[0] | 0x20) {
        case 'u':
            if (name_is(line, nlen, "user-agent", 10))
                own_ua = false;
            break;
        case 'c':
            if (name_is(line, nlen, "content-length", 14))
                continue;
            break;
        case 't':
            if (name_is(line, nlen, "transfer-encoding", 17))
                continue;
            break;
        case 'e':
            if (name_is(line, nlen, "expect", 6))
                continue;
            break;
        default:
            break;
        }
        if (empty)
            continue;
        rc |= cmx_buf_append(b, line, len);
        rc |= cmx_buf_append(b, "\r\n", 2);
    }
    if (r->body_len > 0 || !(strcmp(r->method, "GET") == 0 || x->head_only)) {
        char num[CMX_FMT_U64_MAX], *d = cmx_fmt_u64(num + sizeof(num), r->body_len);
        rc |= cmx_buf_append(b, "Content-Length: ", 16);
        rc |= cmx_buf_append(b, d, (size_t)(num + sizeof(num) - d));
        rc |= cmx_buf_append(b, "\r\n", 2);
    }
    if (own_ua) {
        static const char ua[] = "User-Agent: cloudmux/" CMX_VERSION "\r\n";
        rc |= cmx_buf_append(b, ua, sizeof(ua) - 1);
    }
    rc |= cmx_buf_append(b, "\r\n", 2);
    return rc != 0 ? CMX_ENOMEM : 0;
}

static void resp_reset(struct conn *c)
{
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->hstate = H_NONE;
    c->head_done = false;
    c->complete = false;
    c->msg_done = false;
    c->keep_alive = false;
    c->no_reuse = false;
    c->kick = false;
    c->pending_err = 0;
    cmx_buf_reset(&c->hdrs);
    cmx_buf_reset(&c->held);
}

/* The request could not be (fully) written. */
static void write_failed(struct conn *c)
{
    c->no_reuse = true;
    if (c->x->first_byte)
        return; /* an answer is coming in anyway (say, an early 413): the read side ends it */
    if (retry_stale(c))
        return;
    fail_soon(c, CMX_ERESET);
}

static void write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;
    c->write_pending = false;
    if (c->state != C_ACTIVE || c->x == NULL)
        return;
    if (status < 0)
        write_failed(c);
}

/* Sends c->x's request on the connected (or pooled) c: one writev of head and body, the rest
 * through uv_write when the socket does not take it all. Never calls back. */
static void send_request(struct conn *c)
{
    struct xfer *x = c->x;
    resp_reset(c);
    if (build_head(c, x) != 0) {
        fail_soon(c, CMX_ENOMEM);
        return;
    }
    uv_buf_t bufs[2] = {
        uv_buf_init(c->head.data, (unsigned)c->head.len),
        uv_buf_init((char *)x->req.body, (unsigned)x->req.body_len),
    };
    unsigned nb = x->req.body_len > 0 ? 2 : 1;
    int n = c->fake ? (int)(c->head.len + x->req.body_len)
                    : uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        write_failed(c);
        return;
    }
    size_t done = (size_t)n;
    uv_buf_t *p = bufs;
    while (nb > 0 && done >= p->len) {
        done -= p->len;
        p++;
        nb--;
    }
    if (nb > 0) {
        p->base += done;
        p->len -= done;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, p, nb, write_cb) != 0) {
            write_failed(c);
            return;
        }
        c->write_pending = true;
    }
    rearm(c);
}

/* ---- the response -----------------------------------------------------------------------------
 */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    cmx_buf_reset(&c->hdrs);
    c->hstate = H_NONE;
    return 0;
}

static int add_hdr_bytes(struct conn *c, const char *at, size_t len, bool lower)
{
    char *d = cmx_buf_reserve(&c->hdrs, len + 1);
    if (d == NULL) {
        c->pending_err = CMX_EUPSTREAM;
        return -1;
    }
    if (lower) {
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)at[i];
            d[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
    } else {
        memcpy(d, at, len);
    }
    cmx_buf_commit(&c->hdrs, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->head_done)
        return 0; /* trailers */
    if (c->hstate != H_FIELD) {
        /* cmx_buf keeps a NUL after the data: committing one more byte ends the value */
        if (c->hstate == H_VALUE && add_hdr_bytes(c, "", 1, false) != 0)
            return -1;
        c->hstate = H_FIELD;
    }
    return add_hdr_bytes(c, at, len, true);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->head_done)
        return 0;
    if (c->hstate == H_FIELD) {
        if (add_hdr_bytes(c, "", 1, false) != 0)
            return -1;
        c->hstate = H_VALUE;
    }
    if (c->hstate != H_VALUE)
        return 0;
    return add_hdr_bytes(c, at, len, false);
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Turns the "name\0value\0" pairs into the array on_headers gets (values trimmed). */
static size_t collect_headers(struct conn *c, struct cmx_http_header *hs)
{
    size_t n = 0;
    if (c->hdrs.data == NULL)
        return 0;
    char *p = c->hdrs.data, *end = p + c->hdrs.len;
    while (p < end && n < MAX_HEADER_FIELDS) {
        char *ne = memchr(p, '\0', (size_t)(end - p));
        if (ne == NULL || ne + 1 >= end)
            break;
        char *v = ne + 1;
        char *ve = memchr(v, '\0', (size_t)(end - v));
        if (ve == NULL)
            break;
        char *next = ve + 1;
        while (v < ve && is_ws(*v))
            v++;
        while (ve > v && is_ws(ve[-1]))
            ve--;
        *ve = '\0';
        hs[n].name = p;
        hs[n].name_len = (size_t)(ne - p);
        hs[n].value = v;
        hs[n].value_len = (size_t)(ve - v);
        n++;
        p = next;
    }
    return n;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct xfer *x = c->x;
    if (x == NULL)
        return -1;
    if (c->hstate == H_FIELD && add_hdr_bytes(c, "\0", 2, false) != 0)
        return -1;
    if (c->hstate == H_VALUE && add_hdr_bytes(c, "", 1, false) != 0)
        return -1;
    int status = p->status_code;
    if (status < 200) {
        if (status == 101 || p->upgrade) {
            c->pending_err = CMX_EUPSTREAM; /* we never ask to switch protocols */
            return -1;
        }
        return 0; /* interim (100 Continue, 103): the final head follows */
    }
    struct cmx_http_header hs[MAX_HEADER_FIELDS];
    size_t n = collect_headers(c, hs);
    c->head_done = true;
    c->last_read = now_ms(c->u);
    int r = x->req.on_headers(x->req.ud, status, hs, n);
    if (c->x != x)
        return -1; /* canceled inside */
    if (r != 0) {
        c->pending_err = CMX_ECANCELED;
        return -1;
    }
    rearm(c); /* first byte -> idle */
    /* no body, whatever the head says */
    return x->head_only || status == 204 || status == 304 ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct xfer *x = c->x;
    if (x == NULL)
        return -1;
    if (!c->head_done)
        return 0; /* an interim response's body: there is none in practice */
    if (x->paused || c->held.len > 0) {
        if (cmx_buf_append(&c->held, at, len) != 0) {
            c->pending_err = CMX_ENOMEM;
            return -1;
        }
        return 0;
    }
    int r = x->req.on_data(x->req.ud, at, len);
    if (c->x != x)
        return -1;
    if (r != 0) {
        c->pending_err = CMX_ECANCELED;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->x == NULL)
        return -1;
    if (!c->head_done)
        return 0; /* an interim response ended */
    c->complete = true;
    c->keep_alive = http_should_keep_alive(p) != 0;
    /* stop here: what follows (if anything) is not part of this response */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* The response ended (err 0: complete). A paused transfer gets the bytes it holds first,
 * and then the end, when it resumes. */
static void ended(struct conn *c, int err)
{
    if (c->x->paused || c->held.len > 0) {
        c->msg_done = true;
        c->end_err = err;
        stop_reading(c);
        return;
    }
    xfer_end(c, err);
}

/* Response bytes for c's transfer. */
static void feed(struct conn *c, const char *data, size_t len)
{
    struct xfer *x = c->x;
    size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
    if (c->x != x)
        return; /* canceled in a callback */
    if (c->pending_err != 0) {
        xfer_end(c, c->pending_err);
        return;
    }
    if (c->complete) {
        if (n < len)
            c->no_reuse = true; /* bytes after the response: not a connection to reuse */
        ended(c, 0);
        return;
    }
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || c->parser.upgrade || n != len)
        ended(c, CMX_EUPSTREAM);
}

/* EOF or a read error while c carries a transfer. */
static void read_failed(struct conn *c, int err)
{
    struct xfer *x = c->x;
    if (err == UV_EOF && x->first_byte) {
        /* a body delimited by the close ends here */
        http_parser_execute(&c->parser, &parser_settings, NULL, 0);
        if (c->x != x)
            return;
        if (c->complete) {
            c->no_reuse = true;
            ended(c, 0);
            return;
        }
    }
    if (retry_stale(c))
        return;
    ended(c, CMX_ERESET);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (c->state != C_ACTIVE || c->x == NULL) {
        /* an idle pooled connection: EOF (server closed it) or bytes nobody asked for */
        conn_close(c);
        return;
    }
    if (nread < 0) {
        read_failed(c, (int)nread);
        return;
    }
    c->x->first_byte = true;
    c->last_read = now_ms(c->u);
    feed(c, buf->base, (size_t)nread);
}

/* Delivers body bytes held while paused, then goes on reading (or ends the transfer). */
static void deliver_held(struct conn *c)
{
    struct xfer *x = c->x;
    if (x->paused) {
        rearm(c);
        return;
    }
    if (c->held.len > 0) {
        int r = x->req.on_data(x->req.ud, c->held.data, c->held.len);
        if (c->x != x)
            return;
        cmx_buf_reset(&c->held);
        if (r != 0) {
            xfer_end(c, CMX_ECANCELED);
            return;
        }
        if (x->paused) {
            rearm(c);
            return;
        }
    }
    if (c->msg_done) {
        xfer_end(c, c->end_err);
        return;
    }
    c->last_read = now_ms(c->u);
    start_reading(c);
    rearm(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    c->timer_due = 0;
    if (c->state == C_IDLE) {
        if (now_ms(c->u) >= c->idle_since + POOL_IDLE_MS)
            conn_close(c); /* idle too long */
        else
            arm_at(c, c->idle_since + POOL_IDLE_MS);
        return;
    }
    struct xfer *x = c->x;
    if (c->state == C_CLOSING || x == NULL)
        return;
    if (c->pending_err != 0) {
        xfer_end(c, c->pending_err);
        return;
    }
    if (c->kick) {
        c->kick = false;
        deliver_held(c);
        return;
    }
    uint64_t now = now_ms(c->u);
    if (c->state != C_ACTIVE) {
        if ((x->t_connect && now >= x->t_connect) || (x->t_total && now >= x->t_total)) {
            xfer_end(c, CMX_ECONNECT);
            return;
        }
        if (x->t_first_byte && now >= x->t_first_byte) {
            xfer_end(c, CMX_ETIMEOUT);
            return;
        }
    } else {
        if (x->t_total && now >= x->t_total) {
            xfer_end(c, CMX_ETIMEOUT);
            return;
        }
        if (!c->head_done) {
            if (x->t_first_byte && now >= x->t_first_byte) {
                xfer_end(c, CMX_ETIMEOUT);
                return;
            }
        } else if (!x->paused && x->req.idle_timeout_ms > 0 &&
                   now >= c->last_read + (uint64_t)x->req.idle_timeout_ms) {
            xfer_end(c, CMX_ETIMEOUT);
            return;
        }
    }
    rearm(c);
}

/* ---- the curl delegate ------------------------------------------------------------------------
 */

static int wrap_headers(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    struct xfer *x = ud;
    return x->req.on_headers(x->req.ud, status, h, n);
}

static int wrap_data(void *ud, const char *data, size_t len)
{
    struct xfer *x = ud;
    return x->req.on_data(x->req.ud, data, len);
}

static void wrapped_remove(struct h1 *u, struct xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        u->wrapped = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
}

static void wrap_done(void *ud, int err, bool first_byte)
{
    struct xfer *x = ud;
    struct h1 *u = x->u;
    void *cud = x->req.ud;
    void (*on_done)(void *, int, bool) = x->req.on_done;
    wrapped_remove(u, x);
    xfer_free(u, x);
    on_done(cud, err, first_byte);
}

static int start_curl(struct h1 *u, const struct cmx_upstream_request *req,
                      struct cmx_upstream_xfer **out)
{
    struct xfer *x = xfer_alloc(u);
    if (x == NULL)
        return CMX_ENOMEM;
    x->curl = true;
    x->req = *req;
    struct cmx_upstream_request r = *req;
    r.ud = x;
    r.on_headers = wrap_headers;
    r.on_data = wrap_data;
    r.on_done = wrap_done;
    x->prev = NULL;
    x->next = u->wrapped;
    if (u->wrapped != NULL)
        u->wrapped->prev = x;
    u->wrapped = x;
    int rc = cmx_upstream_curl.start(u->curl, &r, &x->inner);
    if (rc != 0) {
        wrapped_remove(u, x);
        xfer_free(u, x);
        return rc;
    }
    *out = (struct cmx_upstream_xfer *)x;
    return 0;
}

/* ---- URLs -------------------------------------------------------------------------------------
 */

struct url {
    const char *host;      /* without brackets */
    size_t host_len;       /* its length */
    const char *authority; /* host as written (with brackets) */
    size_t authority_len;  /* its length */
    const char *path;      /* after the authority, up to '#' */
    size_t path_len;       /* its length */
    uint16_t port;         /* 80 unless given */
};

/* Splits a plain http:// URL; false for anything else (https, userinfo, odd bytes), which
 * then goes to curl, which knows every corner of URL syntax. */
static bool parse_url(const char *s, struct url *u)
{
    if (strncasecmp(s, "http://", 7) != 0)
        return false;
    const char *p = s + 7;
    const char *a_end = p;
    while (*a_end != '\0' && *a_end != '/' && *a_end != '?' && *a_end != '#') {
        unsigned char ch = (unsigned char)*a_end;
        if (ch <= ' ' || ch >= 0x7f || ch == '@' || ch == '%' || ch == '\\')
            return false;
        a_end++;
    }
    const char *q;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(a_end - p));
        if (rb == NULL)
            return false;
        u->host = p + 1;
        u->host_len = (size_t)(rb - p - 1);
        q = rb + 1;
    } else {
        q = memchr(p, ':', (size_t)(a_end - p));
        if (q == NULL)
            q = a_end;
        u->host = p;
        u->host_len = (size_t)(q - p);
    }
    if (u->host_len == 0 || u->host_len > 255)
        return false;
    u->authority = p;
    u->authority_len = (size_t)(q - p);
    unsigned port = 80;
    if (q < a_end) {
        if (*q != ':')
            return false;
        if (q + 1 < a_end) {
            port = 0;
            for (const char *d = q + 1; d < a_end; d++) {
                if (*d < '0' || *d > '9' || port > 65535)
                    return false;
                port = port * 10 + (unsigned)(*d - '0');
            }
            if (port == 0 || port > 65535)
                return false;
        }
    }
    u->port = (uint16_t)port;
    const char *e = a_end;
    while (*e != '\0' && *e != '#') {
        unsigned char ch = (unsigned char)*e;
        if (ch <= ' ' || ch == 0x7f)
            return false;
        e++;
    }
    u->path = a_end;
    u->path_len = (size_t)(e - a_end);
    return true;
}

/* Fills an h1 transfer from req and its URL. */
static void xfer_setup(struct xfer *x, const struct cmx_upstream_request *req,
                       const struct url *url, uint64_t now)
{
    x->req = *req;
    /* the head always gets "/" first: "http://h?q" asks for "/?q" */
    bool slash = url->path_len > 0 && url->path[0] == '/';
    x->path = url->path + slash;
    x->path_len = url->path_len - slash;
    x->authority = url->authority;
    x->authority_len = url->authority_len;
    x->port = url->port;
    x->head_only = strcmp(req->method, "HEAD") == 0;
    x->t_connect = deadline(now, req->connect_timeout_ms);
    x->t_first_byte = deadline(now, req->first_byte_timeout_ms);
    x->t_total = deadline(now, req->total_timeout_ms);
}

/* ---- the ops ----------------------------------------------------------------------------------
 */

static void curl_gone_cb(void *arg)
{
    struct h1 *u = arg;
    u->curl = NULL;
    unpend(u);
}

static int h1_create(uv_loop_t *loop, struct cmx_upstream **out)
{
    struct h1 *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return CMX_ENOMEM;
    u->loop = loop;
    int rc = cmx_upstream_curl.create(loop, &u->curl);
    if (rc != 0) {
        free(u);
        return rc;
    }
    u->pending = 1; /* the curl client */
    /* curl honours proxy variables; so that setting one keeps working, leave it all to curl */
    const char *px = getenv("http_proxy");
    if (px == NULL || *px == '\0')
        px = getenv("all_proxy");
    if (px == NULL || *px == '\0')
        px = getenv("ALL_PROXY");
    u->proxy_env = px != NULL && *px != '\0';
    *out = (struct cmx_upstream *)u;
    return 0;
}

static int h1_start(struct cmx_upstream *up, const struct cmx_upstream_request *req,
                    struct cmx_upstream_xfer **out)
{
    struct h1 *u = (struct h1 *)up;
    struct url url;
    if (u->destroying)
        return CMX_ECANCELED;
    if (u->proxy_env || !parse_url(req->url, &url))
        return start_curl(u, req, out);
    struct host *h = host_get(u, url.host, url.host_len, url.port);
    if (h == NULL)
        return CMX_ENOMEM;
    struct xfer *x = xfer_alloc(u);
    if (x == NULL)
        return CMX_ENOMEM;
    xfer_setup(x, req, &url, now_ms(u));
    struct conn *c = h->idle;
    if (c != NULL) {
        list_remove(&h->idle, c);
        h->n_idle--;
        c->state = C_ACTIVE;
        c->x = x;
        x->c = c;
        send_request(c);
    } else {
        c = conn_new(u, h);
        if (c == NULL) {
            xfer_free(u, x);
            return CMX_ENOMEM;
        }
        c->x = x;
        x->c = c;
        conn_begin(c);
    }
    *out = (struct cmx_upstream_xfer *)x;
    return 0;
}

static void h1_cancel(struct cmx_upstream_xfer *xp)
{
    struct xfer *x = (struct xfer *)xp;
    if (x == NULL)
        return;
    struct h1 *u = x->u;
    if (x->curl) {
        cmx_upstream_curl.cancel(x->inner);
        wrapped_remove(u, x);
        xfer_free(u, x);
        return;
    }
    struct conn *c = x->c;
    c->x = NULL;
    conn_close(c);
    xfer_free(u, x);
}

static void h1_pause(struct cmx_upstream_xfer *xp, bool paused)
{
    struct xfer *x = (struct xfer *)xp;
    if (x == NULL)
        return;
    if (x->curl) {
        cmx_upstream_curl.pause(x->inner, paused);
        return;
    }
    if (x->paused == paused)
        return;
    x->paused = paused;
    struct conn *c = x->c;
    if (c->state != C_ACTIVE)
        return; /* connect_cb looks at paused */
    if (paused) {
        stop_reading(c); /* the idle timeout is suspended: the next rearm leaves it out */
    } else if (c->held.len > 0 || c->msg_done) {
        c->kick = true; /* deliver from the loop, not from inside the caller */
        arm_at(c, now_ms(c->u));
    } else {
        c->last_read = now_ms(c->u);
        start_reading(c);
        rearm(c);
    }
}

static void unpend(struct h1 *u)
{
    if (--u->pending > 0 || !u->destroying)
        return;
    for (size_t b = 0; b < HOST_BUCKETS; b++) {
        while (u->hosts[b] != NULL) {
            struct host *h = u->hosts[b];
            u->hosts[b] = h->next;
            free(h);
        }
    }
    while (u->free_xfers != NULL) {
        struct xfer *x = u->free_xfers;
        u->free_xfers = x->next;
        free(x);
    }
    void (*done)(void *) = u->done;
    void *arg = u->done_arg;
    free(u);
    if (done != NULL)
        done(arg);
}

static void h1_destroy(struct cmx_upstream *up, void (*done)(void *), void *arg)
{
    struct h1 *u = (struct h1 *)up;
    u->destroying = true;
    u->done = done;
    u->done_arg = arg;
    /* curl's destroy cancels its transfers without callbacks; drop our wrappers */
    while (u->wrapped != NULL) {
        struct xfer *x = u->wrapped;
        wrapped_remove(u, x);
        free(x);
    }
    while (u->conns != NULL) {
        struct conn *c = u->conns;
        struct xfer *x = c->x;
        conn_close(c);
        if (x != NULL)
            free(x);
    }
    for (size_t b = 0; b < HOST_BUCKETS; b++) {
        for (struct host *h = u->hosts[b]; h != NULL; h = h->next) {
            if (h->resolving != NULL) {
                h->resolving->host = NULL;
                uv_cancel((uv_req_t *)&h->resolving->req);
                h->resolving = NULL;
            }
        }
    }
    /* the curl client's handles close asynchronously: done() never runs from in here */
    cmx_upstream_curl.destroy(u->curl, curl_gone_cb, u);
}

/* Test hook for tests/unit/test_upstream_h1.c and fuzz/fuzz_h1_response.c, declared there:
 * runs req (an http:// URL) as if its request had gone out on a connection and the pieces
 * had arrived as reads, then EOF when eof is set. *out (when not NULL) gets the transfer
 * before the first callback, for pause/cancel from inside them. A transfer paused by a
 * callback is resumed (until it stays unpaused) before the next piece and after the last;
 * one that did not end is canceled. No socket,
 * nothing is pooled. Callbacks run from inside; the connection's handles close on the next
 * loop turn. Returns 0, CMX_EINVAL (URL) or CMX_ENOMEM. */
int cmx_upstream_h1_feed(struct cmx_upstream *up, const struct cmx_upstream_request *req,
                         struct cmx_upstream_xfer **out, const char *const *pieces,
                         const size_t *lens, size_t n, bool eof);

int cmx_upstream_h1_feed(struct cmx_upstream *up, const struct cmx_upstream_request *req,
                         struct cmx_upstream_xfer **out, const char *const *pieces,
                         const size_t *lens, size_t n, bool eof)
{
    struct h1 *u = (struct h1 *)up;
    struct url url;
    if (!parse_url(req->url, &url))
        return CMX_EINVAL;
    struct host *h = host_get(u, url.host, url.host_len, url.port);
    if (h == NULL)
        return CMX_ENOMEM;
    struct xfer *x = xfer_alloc(u);
    if (x == NULL)
        return CMX_ENOMEM;
    struct conn *c = conn_new(u, h);
    if (c == NULL) {
        xfer_free(u, x);
        return CMX_ENOMEM;
    }
    xfer_setup(x, req, &url, 0);
    x->t_connect = x->t_first_byte = x->t_total = 0;
    c->fake = true;
    c->state = C_ACTIVE;
    c->x = x;
    x->c = c;
    send_request(c); /* builds the head; fake connections write nothing */
    if (out != NULL)
        *out = (struct cmx_upstream_xfer *)x;
    for (size_t i = 0; c->x == x; i++) {
        /* ends: held bytes go out at once, a second pause finds nothing held */
        while (c->x == x && x->paused) {
            h1_pause((struct cmx_upstream_xfer *)x, false);
            c->kick = false;
            deliver_held(c);
        }
        if (c->x != x || i == n)
            break;
        if (lens[i] == 0)
            continue;
        x->first_byte = true;
        feed(c, pieces[i], lens[i]);
    }
    if (c->x == x && eof && !x->paused)
        read_failed(c, UV_EOF);
    if (c->x == x)
        h1_cancel((struct cmx_upstream_xfer *)x);
    return 0;
}

const struct cmx_upstream_ops cmx_upstream_h1 = {
    .name = "h1",
    .create = h1_create,
    .start = h1_start,
    .cancel = h1_cancel,
    .pause = h1_pause,
    .destroy = h1_destroy,
};
