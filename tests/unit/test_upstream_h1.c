/* Unit tests for src/upstream/h1.c: a real libuv loop, the client, and a tiny scripted HTTP
 * server on 127.0.0.1 (raw uv_tcp) in the same loop. Each test checks what the callbacks
 * saw, what the server saw (connections accepted, requests, the last request's bytes) and
 * that everything closes: uv_loop_close() must succeed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include <uv.h>

#include "core/buf.h"
#include "core/err.h"
#include "upstream/upstream.h"

/* Test hook in src/upstream/h1.c. */
int cmx_upstream_h1_feed(struct cmx_upstream *up, const struct cmx_upstream_request *req,
                         struct cmx_upstream_xfer **out, const char *const *pieces,
                         const size_t *lens, size_t n, bool eof);

/* ---- the scripted server ------------------------------------------------------------------- */

enum act { SEND, CLOSE, RESET, HANG };

struct step {
    enum act act;     /* what to do */
    int delay_ms;     /* after this long (from the previous step) */
    const char *data; /* SEND: NUL-terminated bytes */
};

#define MAX_STEPS 8

struct script {
    struct step steps[MAX_STEPS]; /* what to answer */
    int n;                        /* steps used */
};

struct srv;

struct sconn {
    uv_tcp_t tcp;            /* accepted socket */
    uv_timer_t timer;        /* paces the steps */
    struct srv *s;           /* owner */
    struct sconn *next;      /* s->conns */
    struct cmx_buf in;       /* unparsed request bytes */
    const struct script *sc; /* script being played, NULL when idle */
    int step;                /* next step */
    bool closed;             /* uv_close called */
    int closes;              /* close callbacks to come */
};

struct srv {
    uv_loop_t *loop;              /* the test's loop */
    uv_tcp_t listener;            /* on 127.0.0.1:port */
    int port;                     /* bound port */
    int accepted;                 /* connections accepted */
    int requests;                 /* complete requests seen */
    int conns_closed_by_peer;     /* EOF/errors seen from the client */
    size_t last_body_len;         /* body length of the last request */
    struct cmx_buf last_req;      /* head of the last request */
    const struct script *scripts; /* scripts[i] answers request i (the last one repeats) */
    int n_scripts;
    struct sconn *conns; /* open connections */
};

static void sconn_closed_cb(uv_handle_t *h)
{
    struct sconn *sc = h->data;
    if (--sc->closes > 0)
        return;
    cmx_buf_free(&sc->in);
    free(sc);
}

static void sconn_close(struct sconn *sc, bool reset)
{
    if (sc->closed)
        return;
    sc->closed = true;
    struct sconn **pp = &sc->s->conns;
    while (*pp != sc)
        pp = &(*pp)->next;
    *pp = sc->next;
    sc->closes = 2;
    uv_timer_stop(&sc->timer);
    uv_close((uv_handle_t *)&sc->timer, sconn_closed_cb);
    if (reset)
        uv_tcp_close_reset(&sc->tcp, sconn_closed_cb);
    else
        uv_close((uv_handle_t *)&sc->tcp, sconn_closed_cb);
}

static void write_done_cb(uv_write_t *w, int status)
{
    free(w);
}

static void play(struct sconn *sc);

static void step_cb(uv_timer_t *t)
{
    struct sconn *sc = t->data;
    const struct step *st = &sc->sc->steps[sc->step++];
    switch (st->act) {
    case SEND: {
        uv_write_t *w = malloc(sizeof(*w));
        uv_buf_t b = uv_buf_init((char *)st->data, (unsigned)strlen(st->data));
        assert_non_null(w);
        if (uv_write(w, (uv_stream_t *)&sc->tcp, &b, 1, write_done_cb) != 0)
            free(w);
        break;
    }
    case CLOSE:
        sconn_close(sc, false);
        return;
    case RESET:
        sconn_close(sc, true);
        return;
    case HANG:
        sc->sc = NULL;
        sc->step = 0;
        return;
    }
    play(sc);
}

/* Runs the next step of the current script (now or after its delay). */
static void play(struct sconn *sc)
{
    if (sc->step >= sc->sc->n) {
        sc->sc = NULL;
        sc->step = 0;
        return;
    }
    uv_timer_start(&sc->timer, step_cb, (uint64_t)sc->sc->steps[sc->step].delay_ms, 0);
}

/* Finds a whole request in sc->in (head + Content-Length body) and answers it. */
static void serve(struct sconn *sc)
{
    struct srv *s = sc->s;
    while (sc->sc == NULL && sc->in.len > 0) {
        char *end = strstr(sc->in.data, "\r\n\r\n");
        if (end == NULL)
            return;
        size_t head = (size_t)(end - sc->in.data) + 4;
        size_t body = 0;
        for (char *p = sc->in.data; p < end; p++) {
            if (strncasecmp(p, "\r\ncontent-length:", 17) == 0)
                body = (size_t)strtoull(p + 17, NULL, 10);
        }
        if (sc->in.len < head + body)
            return;
        cmx_buf_reset(&s->last_req);
        assert_int_equal(cmx_buf_append(&s->last_req, sc->in.data, head), 0);
        s->last_body_len = body;
        cmx_buf_consume(&sc->in, head + body);
        int i = s->requests < s->n_scripts ? s->requests : s->n_scripts - 1;
        s->requests++;
        sc->sc = &s->scripts[i];
        sc->step = 0;
        play(sc);
    }
}

static void salloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    static char buf[65536];
    b->base = buf;
    b->len = sizeof(buf);
}

static void sread_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct sconn *sc = st->data;
    if (n < 0) {
        sc->s->conns_closed_by_peer++;
        sconn_close(sc, false);
        return;
    }
    if (n == 0)
        return;
    assert_int_equal(cmx_buf_append(&sc->in, b->base, (size_t)n), 0);
    serve(sc);
}

static void accept_cb(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    assert_int_equal(status, 0);
    struct sconn *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->s = s;
    cmx_buf_init(&sc->in, 64u << 20);
    uv_tcp_init(s->loop, &sc->tcp);
    uv_timer_init(s->loop, &sc->timer);
    sc->tcp.data = sc;
    sc->timer.data = sc;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&sc->tcp), 0);
    sc->next = s->conns;
    s->conns = sc;
    s->accepted++;
    uv_read_start((uv_stream_t *)&sc->tcp, salloc_cb, sread_cb);
}

static void srv_start(struct srv *s, uv_loop_t *loop, const struct script *scripts, int n)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->scripts = scripts;
    s->n_scripts = n;
    cmx_buf_init(&s->last_req, 1u << 20);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 128, accept_cb), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(struct srv *s)
{
    while (s->conns != NULL)
        sconn_close(s->conns, false);
    uv_close((uv_handle_t *)&s->listener, NULL);
    cmx_buf_free(&s->last_req);
}

/* A port nothing listens on: bind one, note it, close it. */
static int closed_port(uv_loop_t *loop)
{
    uv_tcp_t t;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &t);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- the client side ----------------------------------------------------------------------- */

struct res {
    const struct cmx_upstream_ops *ops;
    struct cmx_upstream *u;
    struct cmx_upstream_xfer *x; /* while running */
    char url[128];               /* request URL */
    const char *method;          /* "POST" unless set */
    const char *body;            /* request body */
    size_t body_len;
    int status; /* from on_headers */
    int headers_calls;
    char x_test[64]; /* value of response header x-test */
    int data_calls;
    struct cmx_buf body_in; /* response body */
    int done_calls;
    int err;
    bool first_byte;
    int cancel_on_data;    /* cancel from inside the n-th on_data (1-based; 0: never) */
    int pause_on_data;     /* pause from inside the n-th on_data */
    bool abort_on_headers; /* return non-zero from on_headers */
    int chain;             /* start the same request again from on_done this many times */
    int fb_ms, idle_ms, total_ms, connect_ms;
};

static void res_init(struct res *r, const struct cmx_upstream_ops *ops, struct cmx_upstream *u,
                     const char *url)
{
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    r->u = u;
    snprintf(r->url, sizeof(r->url), "%s", url);
    r->method = "POST";
    r->body = "{}";
    r->body_len = 2;
    r->err = 1;
    r->fb_ms = 5000;
    r->idle_ms = 5000;
    r->connect_ms = 5000;
    cmx_buf_init(&r->body_in, 64u << 20);
}

static int on_headers(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    struct res *r = ud;
    r->status = status;
    r->headers_calls++;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strlen(h[i].name), h[i].name_len);
        assert_int_equal(strlen(h[i].value), h[i].value_len);
        if (strcmp(h[i].name, "x-test") == 0)
            snprintf(r->x_test, sizeof(r->x_test), "%s", h[i].value);
    }
    return r->abort_on_headers ? 1 : 0;
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct res *r = ud;
    r->data_calls++;
    assert_int_equal(cmx_buf_append(&r->body_in, data, len), 0);
    if (r->data_calls == r->cancel_on_data) {
        r->ops->cancel(r->x);
        r->x = NULL;
    } else if (r->data_calls == r->pause_on_data) {
        r->ops->pause(r->x, true);
    }
    return 0;
}

static int go(struct res *r);

static void on_done(void *ud, int err, bool first_byte)
{
    struct res *r = ud;
    r->x = NULL;
    r->done_calls++;
    r->err = err;
    r->first_byte = first_byte;
    if (r->chain > 0 && err == 0) {
        r->chain--;
        cmx_buf_reset(&r->body_in);
        assert_int_equal(go(r), 0);
    }
}

static const char *const req_headers[] = {"Content-Type: application/json",
                                          "Authorization: Bearer sk-test", "Expect: 100-continue",
                                          "Accept:"};

static int go(struct res *r)
{
    struct cmx_upstream_request req = {
        .method = r->method,
        .url = r->url,
        .headers = req_headers,
        .n_headers = 4,
        .body = r->body,
        .body_len = r->body_len,
        .connect_timeout_ms = r->connect_ms,
        .first_byte_timeout_ms = r->fb_ms,
        .idle_timeout_ms = r->idle_ms,
        .total_timeout_ms = r->total_ms,
        .ud = r,
        .on_headers = on_headers,
        .on_data = on_data,
        .on_done = on_done,
    };
    return r->ops->start(r->u, &req, &r->x);
}

/* ---- loop helpers ---------------------------------------------------------------------------- */

static void guard_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

struct until {
    const int *count; /* watched counter */
    int want;         /* stop once it got here */
};

/* Timers run before the poll in a loop turn: stop the turn before it blocks in the poll
 * when a timer callback got us what we wait for. */
static void until_cb(uv_prepare_t *p)
{
    const struct until *u = p->data;
    if (*u->count >= u->want)
        uv_stop(p->loop);
}

/* Runs the loop until *count reaches want or ms pass; returns whether it did. */
static bool run_until(uv_loop_t *loop, const int *count, int want, int ms)
{
    bool expired = false;
    struct until un = {count, want};
    uv_timer_t t;
    uv_prepare_t p;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, guard_cb, (uint64_t)ms, 0);
    uv_prepare_init(loop, &p);
    p.data = &un;
    uv_prepare_start(&p, until_cb);
    while (*count < want && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&p, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *count >= want;
}

static void run_for(uv_loop_t *loop, int ms)
{
    int never = 0;
    run_until(loop, &never, 1, ms);
}

struct env {
    uv_loop_t loop;
    struct srv srv;
    struct cmx_upstream *u;
    int destroyed;
};

static void env_start(struct env *e, const struct script *scripts, int n)
{
    assert_int_equal(uv_loop_init(&e->loop), 0);
    srv_start(&e->srv, &e->loop, scripts, n);
    assert_int_equal(cmx_upstream_h1.create(&e->loop, &e->u), 0);
    e->destroyed = 0;
}

static void gone_cb(void *arg)
{
    (*(int *)arg)++;
}

static void env_stop(struct env *e)
{
    if (e->u != NULL) {
        cmx_upstream_h1.destroy(e->u, gone_cb, &e->destroyed);
        assert_true(run_until(&e->loop, &e->destroyed, 1, 5000));
        e->u = NULL;
    }
    srv_stop(&e->srv);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void url_for(char *out, size_t n, const struct env *e, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", e->srv.port, path);
}

/* Starts r against e's server at path and runs until it is done. */
static void run_one(struct env *e, struct res *r, const char *path)
{
    char url[128];
    url_for(url, sizeof(url), e, path);
    res_init(r, &cmx_upstream_h1, e->u, url);
}

#define OK_RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test:  a b  \r\n\r\nhello"

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_content_length(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/v1/chat?x=1");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, 0);
    assert_true(r.first_byte);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.headers_calls, 1);
    assert_string_equal(r.x_test, "a b");
    assert_string_equal(r.body_in.data, "hello");
    char want[512];
    snprintf(
        want, sizeof(want),
        "POST /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer sk-test\r\nContent-Length: 2\r\nUser-Agent: cloudmux/" CMX_VERSION
        "\r\n\r\n",
        e.srv.port);
    assert_string_equal(e.srv.last_req.data, want);
    assert_int_equal(e.srv.last_body_len, 2);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_chunked_split(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Te"},
          {SEND, 15, "st: v\r\n\r\n5\r\nhe"},
          {SEND, 15, "llo\r\n1"},
          {SEND, 15, "0\r\n 0123456789abcde\r"},
          {SEND, 15, "\n0\r\n"},
          {SEND, 15, "\r\n"}},
         6}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "");
    r.method = "GET";
    r.body = NULL;
    r.body_len = 0;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.x_test, "v");
    assert_string_equal(r.body_in.data, "hello 0123456789abcde");
    assert_true(r.data_calls >= 3);
    /* no body: no Content-Length; no path: "/" */
    assert_non_null(strstr(e.srv.last_req.data, "GET / HTTP/1.1\r\n"));
    assert_null(strstr(e.srv.last_req.data, "Content-Length"));
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_close_delimited(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\n\r\nabc"}, {SEND, 10, "def"}, {CLOSE, 10, NULL}}, 3}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.chain = 1; /* the next one needs a new connection */
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "abcdef");
    assert_int_equal(e.srv.accepted, 2);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_keepalive_reuse(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/a");
    r.chain = 2; /* started from inside on_done: reuses the connection just released */
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 3, 3000));
    assert_int_equal(r.err, 0);
    assert_int_equal(e.srv.requests, 3);
    assert_int_equal(e.srv.accepted, 1);
    /* and from outside a callback, later */
    run_for(&e.loop, 20);
    cmx_buf_reset(&r.body_in);
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 4, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "hello");
    assert_int_equal(e.srv.accepted, 1);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_stale_idle_closed(void **state)
{
    /* the server closes the connection 10 ms after answering: the pool must drop it */
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}, {CLOSE, 10, NULL}}, 2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, 0);
    run_for(&e.loop, 60);
    cmx_buf_reset(&r.body_in);
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "hello");
    assert_int_equal(e.srv.accepted, 2);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_stale_race_retried(void **state)
{
    /* request 2 arrives on the pooled connection and the server closes it unanswered (the
     * keep-alive race): the client must retry once on a fresh connection */
    static const struct script sc[] = {
        {{{SEND, 0, OK_RESPONSE}}, 1}, {{{CLOSE, 0, NULL}}, 1}, {{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 3);
    run_one(&e, &r, "/");
    r.chain = 1;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "hello");
    assert_int_equal(e.srv.requests, 3);
    assert_int_equal(e.srv.accepted, 2);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_continue_then_200(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 100 Continue\r\nX-Test: interim\r\n\r\n"},
          {SEND, 10, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Test: final\r\n\r\nok"}},
         2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.chain = 1; /* and the connection is still good afterwards */
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 3000));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.headers_calls, 2);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.x_test, "final");
    assert_string_equal(r.body_in.data, "ok");
    assert_int_equal(e.srv.accepted, 1);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_connect_refused(void **state)
{
    static const struct script sc[] = {{{{HANG, 0, NULL}}, 1}};
    struct env e;
    struct res r;
    char url[128];
    env_start(&e, sc, 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port(&e.loop));
    res_init(&r, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ECONNECT);
    assert_false(r.first_byte);
    assert_int_equal(r.headers_calls, 0);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_first_byte_timeout(void **state)
{
    static const struct script sc[] = {{{{HANG, 0, NULL}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.fb_ms = 100;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(r.err, CMX_ETIMEOUT);
    assert_false(r.first_byte);
    assert_true(ms >= 90 && ms < 1000);
    assert_int_equal(e.srv.requests, 1);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_idle_timeout(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"},
          {SEND, 60, "de"},
          {HANG, 0, NULL}},
         3}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.idle_ms = 100; /* 60 ms gaps are fine, then silence */
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ETIMEOUT);
    assert_true(r.first_byte);
    assert_int_equal(r.headers_calls, 1);
    assert_string_equal(r.body_in.data, "abcde");
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_total_timeout(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\na"},
          {SEND, 40, "b"},
          {SEND, 40, "c"},
          {SEND, 40, "d"},
          {SEND, 40, "e"},
          {HANG, 0, NULL}},
         6}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.total_ms = 100;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ETIMEOUT);
    assert_true(r.first_byte);
    assert_true(r.body_in.len >= 2 && r.body_in.len <= 4);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_reset_mid_body(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}, {RESET, 30, NULL}}, 2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ERESET);
    assert_true(r.first_byte);
    assert_string_equal(r.body_in.data, "abc");
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_truncated_body(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}, {CLOSE, 10, NULL}}, 2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ERESET);
    assert_true(r.first_byte);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_no_response(void **state)
{
    /* a fresh connection closed before any byte: ERESET, first_byte false, no retry */
    static const struct script sc[] = {{{{CLOSE, 0, NULL}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ERESET);
    assert_false(r.first_byte);
    assert_int_equal(e.srv.requests, 1);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_parse_error(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0, "HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\nabc"}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_EUPSTREAM);
    assert_true(r.first_byte);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_abort_from_headers(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.abort_on_headers = true;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, CMX_ECANCELED);
    assert_int_equal(r.data_calls, 0);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_cancel_in_on_data(void **state)
{
    /* two chunks in one read, then more later: nothing after the cancel */
    static const struct script sc[] = {
        {{{SEND, 0,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n"},
          {SEND, 20, "3\r\nghi\r\n0\r\n\r\n"}},
         2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.cancel_on_data = 1;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.data_calls, 1, 3000));
    run_for(&e.loop, 80);
    assert_int_equal(r.data_calls, 1);
    assert_int_equal(r.done_calls, 0);
    assert_string_equal(r.body_in.data, "abc");
    assert_int_equal(e.srv.conns_closed_by_peer, 1); /* the connection was not pooled */
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_pause_resume(void **state)
{
    static const struct script sc[] = {
        {{{SEND, 0,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n"},
          {SEND, 20, "3\r\nghi\r\n0\r\n\r\n"}},
         2}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.pause_on_data = 1;
    r.idle_ms = 50; /* a paused transfer is not idle */
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.data_calls, 1, 3000));
    run_for(&e.loop, 150);
    assert_int_equal(r.data_calls, 1);
    assert_int_equal(r.done_calls, 0);
    assert_string_equal(r.body_in.data, "abc");
    cmx_upstream_h1.pause(r.x, false);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "abcdefghi");
    /* completed cleanly: the connection is reused */
    r.pause_on_data = 0;
    r.data_calls = 0;
    cmx_buf_reset(&r.body_in);
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 3000));
    assert_int_equal(r.err, 0);
    assert_int_equal(e.srv.accepted, 1);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_pause_completes_on_resume(void **state)
{
    /* the whole response in one read, paused in the first piece: done only after resume */
    static const struct script sc[] = {{{{SEND, 0,
                                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                          "chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"}},
                                        1}};
    struct env e;
    struct res r;
    env_start(&e, sc, 1);
    run_one(&e, &r, "/");
    r.pause_on_data = 1;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.data_calls, 1, 3000));
    run_for(&e.loop, 30);
    assert_int_equal(r.done_calls, 0);
    cmx_upstream_h1.pause(r.x, false);
    assert_int_equal(r.data_calls, 1); /* never from inside pause() */
    assert_true(run_until(&e.loop, &r.done_calls, 1, 3000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "abcdef");
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_large_request_body(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    size_t n = 8u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'z', n);
    env_start(&e, sc, 1);
    run_one(&e, &r, "/big");
    r.body = big;
    r.body_len = n;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 5000));
    assert_int_equal(r.err, 0);
    assert_int_equal(e.srv.last_body_len, n);
    free(big);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_resolve_localhost(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}};
    struct env e;
    struct res r;
    char url[128];
    env_start(&e, sc, 1);
    snprintf(url, sizeof(url), "http://localhost:%d/r", e.srv.port);
    res_init(&r, &cmx_upstream_h1, e.u, url);
    r.chain = 1;
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 2, 5000));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "hello");
    assert_int_equal(e.srv.accepted, 1);
    char host[64];
    snprintf(host, sizeof(host), "Host: localhost:%d\r\n", e.srv.port);
    assert_non_null(strstr(e.srv.last_req.data, host));
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_https_delegated(void **state)
{
    static const struct script sc[] = {{{{HANG, 0, NULL}}, 1}};
    struct env e;
    struct res r;
    char url[128];
    env_start(&e, sc, 1);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", closed_port(&e.loop));
    res_init(&r, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&r), 0);
    assert_true(run_until(&e.loop, &r.done_calls, 1, 5000));
    assert_int_equal(r.err, CMX_ECONNECT);
    assert_false(r.first_byte);
    /* and one canceled right away */
    res_init(&r, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&r), 0);
    cmx_upstream_h1.cancel(r.x);
    run_for(&e.loop, 50);
    assert_int_equal(r.done_calls, 0);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

static void test_destroy_in_flight(void **state)
{
    static const struct script sc[] = {{{{SEND, 0, OK_RESPONSE}}, 1}, {{{HANG, 0, NULL}}, 1}};
    struct env e;
    struct res pooled, hang, resolving, tls;
    char url[128];
    env_start(&e, sc, 2);
    run_one(&e, &pooled, "/");
    assert_int_equal(go(&pooled), 0);
    assert_true(run_until(&e.loop, &pooled.done_calls, 1, 3000)); /* leaves a pooled conn */
    run_one(&e, &hang, "/hang");
    assert_int_equal(go(&hang), 0); /* reuses the pooled one, server never answers */
    snprintf(url, sizeof(url), "http://localhost:%d/", e.srv.port);
    res_init(&resolving, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&resolving), 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", e.srv.port);
    res_init(&tls, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&tls), 0);
    run_for(&e.loop, 20);
    cmx_upstream_h1.destroy(e.u, gone_cb, &e.destroyed);
    e.u = NULL;
    assert_true(run_until(&e.loop, &e.destroyed, 1, 5000));
    assert_int_equal(hang.done_calls, 0);
    assert_int_equal(resolving.done_calls, 0);
    assert_int_equal(tls.done_calls, 0);
    cmx_buf_free(&pooled.body_in);
    cmx_buf_free(&hang.body_in);
    cmx_buf_free(&resolving.body_in);
    cmx_buf_free(&tls.body_in);
    env_stop(&e);
}

static void test_destroy_while_resolving(void **state)
{
    static const struct script sc[] = {{{{HANG, 0, NULL}}, 1}};
    struct env e;
    struct res r;
    char url[128];
    env_start(&e, sc, 1);
    snprintf(url, sizeof(url), "http://localhost:%d/", e.srv.port);
    res_init(&r, &cmx_upstream_h1, e.u, url);
    assert_int_equal(go(&r), 0);
    cmx_upstream_h1.destroy(e.u, gone_cb, &e.destroyed);
    e.u = NULL;
    assert_int_equal(e.destroyed, 0); /* never from inside destroy() */
    assert_true(run_until(&e.loop, &e.destroyed, 1, 5000));
    assert_int_equal(r.done_calls, 0);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

/* ---- the socket-less hook ----------------------------------------------------------------------
 */

static void feed_all(struct env *e, struct res *r, const char *resp, size_t step, bool eof)
{
    size_t len = strlen(resp), n = (len + step - 1) / step;
    const char **pieces = calloc(n + 1, sizeof(*pieces));
    size_t *lens = calloc(n + 1, sizeof(*lens));
    assert_non_null(pieces);
    assert_non_null(lens);
    for (size_t i = 0; i < n; i++) {
        pieces[i] = resp + i * step;
        lens[i] = i + 1 < n ? step : len - i * step;
    }
    struct cmx_upstream_request req = {
        .method = "POST",
        .url = "http://upstream.test:8080/v1/x",
        .ud = r,
        .on_headers = on_headers,
        .on_data = on_data,
        .on_done = on_done,
    };
    assert_int_equal(cmx_upstream_h1_feed(e->u, &req, &r->x, pieces, lens, n, eof), 0);
    free(pieces);
    free(lens);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void test_feed_any_split(void **state)
{
    static const char resp[] =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        "X-Test:\tq\r\n\r\n4\r\nwxyz\r\n0\r\nTrailer: t\r\n\r\n";
    struct env e;
    env_start(&e, NULL, 0);
    for (size_t step = 1; step <= sizeof(resp); step++) {
        for (int pause = 0; pause < 2; pause++) {
            struct res r;
            res_init(&r, &cmx_upstream_h1, e.u, "");
            r.pause_on_data = pause;
            feed_all(&e, &r, resp, step, false);
            assert_int_equal(r.done_calls, 1);
            assert_int_equal(r.err, 0);
            assert_int_equal(r.headers_calls, 1);
            assert_string_equal(r.x_test, "q");
            assert_string_equal(r.body_in.data, "wxyz");
            cmx_buf_free(&r.body_in);
        }
    }
    /* close-delimited, and truncated */
    struct res r;
    res_init(&r, &cmx_upstream_h1, e.u, "");
    feed_all(&e, &r, "HTTP/1.0 200 OK\r\n\r\nbody", 3, true);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.body_in.data, "body");
    cmx_buf_free(&r.body_in);
    res_init(&r, &cmx_upstream_h1, e.u, "");
    feed_all(&e, &r, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nbody", 3, true);
    assert_int_equal(r.err, CMX_ERESET);
    cmx_buf_free(&r.body_in);
    env_stop(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked_split),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_stale_idle_closed),
        cmocka_unit_test(test_stale_race_retried),
        cmocka_unit_test(test_continue_then_200),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_reset_mid_body),
        cmocka_unit_test(test_truncated_body),
        cmocka_unit_test(test_no_response),
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_abort_from_headers),
        cmocka_unit_test(test_cancel_in_on_data),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_pause_completes_on_resume),
        cmocka_unit_test(test_large_request_body),
        cmocka_unit_test(test_resolve_localhost),
        cmocka_unit_test(test_https_delegated),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_destroy_while_resolving),
        cmocka_unit_test(test_feed_any_split),
    };
    assert_int_equal(cmx_upstream_global_init(), 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
