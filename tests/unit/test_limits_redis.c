/* Tests for src/limits/limits_redis.c against a real redis-server (Debian package) that this
 * test starts on a free port in a temporary directory: two independent limiters ("two
 * gateway instances") share exact counters; the Lua script is all-or-nothing and settles;
 * NOSCRIPT falls back to EVAL; a stopped Redis answers per on_error policy and moves the
 * counters; the clients reconnect once Redis is back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "limits/limits.h"

#define SEC    INT64_C(1000000)
#define MINUTE (60 * SEC)

static int port;
static pid_t redis_pid = -1;
static char dir[64];
static uv_loop_t loop;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), p;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    p = ntohs(a.sin_port);
    close(fd);
    return p;
}

static redisContext *sync_conn(void)
{
    struct timeval tv = {0, 200000};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (rc != NULL && rc->err) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

static void start_redis(void)
{
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    redis_pid = fork();
    if (redis_pid == 0) {
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", portbuf, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    /* up to 5 s for it to answer PING */
    for (int i = 0; i < 100; i++) {
        redisContext *rc = sync_conn();
        if (rc != NULL) {
            redisReply *r = redisCommand(rc, "PING");
            bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(rc);
            if (ok)
                return;
        }
        int st;
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid)
            fail_msg("redis-server exited (status %d): is it installed? "
                     "scripts/install-deps.sh test",
                     st);
        usleep(50000);
    }
    fail_msg("redis-server did not answer on port %d", port);
}

static void stop_redis(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

static void redis_cmd(const char *cmd)
{
    redisContext *rc = sync_conn();
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(rc);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cmx-limits-redis-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    port = free_port();
    if (port <= 0)
        return -1;
    uv_loop_init(&loop);
    start_redis();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop_redis();
    /* handles closed by the tests; run once more for the adapters' close callbacks */
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

static struct cmx_limits *open_instance_at(const char *host, enum cmx_limits_on_error pol)
{
    struct cmx_limits_config cfg;
    struct cmx_limits *l;
    char url[64], err[200];
    cmx_limits_config_init(&cfg);
    snprintf(url, sizeof(url), "redis://%s:%d/0", host, port);
    assert_int_equal(cmx_limits_config_parse(&cfg, url, strlen(url), err, sizeof(err)), 0);
    cfg.on_error = pol;
    cfg.timeout_ms = 1000;
    cfg.backoff_min_ms = 20;
    cfg.backoff_max_ms = 200;
    assert_int_equal(cmx_limits_new(&cfg, &l), 0);
    return l;
}

static struct cmx_limits *open_instance(enum cmx_limits_on_error pol)
{
    return open_instance_at("127.0.0.1", pol);
}

static void wait_timer_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *done reaches want or max_ms passes. */
static void run_until(int *done, int want, int max_ms)
{
    uv_timer_t t;
    bool expired = false;
    uv_timer_init(&loop, &t);
    t.data = &expired;
    uv_timer_start(&t, wait_timer_cb, (uint64_t)max_ms, 0);
    while (*done < want && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void sleep_loop(int ms)
{
    int never = 0;
    run_until(&never, 1, ms);
}

struct tally {
    int done;
    int allowed, denied, err_allow, err_deny;
    int sync; /* completed before take returned */
    bool in_take;
    struct cmx_limits_result last;
};

static void tally_cb(void *ud, const struct cmx_limits_result *r)
{
    struct tally *t = ud;
    t->done++;
    t->sync += t->in_take;
    t->last = *r;
    switch (r->verdict) {
    case CMX_LIMITS_ALLOW:
        t->allowed++;
        break;
    case CMX_LIMITS_DENY:
        t->denied++;
        break;
    case CMX_LIMITS_ERROR_ALLOW:
        t->err_allow++;
        break;
    case CMX_LIMITS_ERROR_DENY:
        t->err_deny++;
        break;
    }
}

static void do_take(struct cmx_limits_client *c, const struct cmx_limits_bucket *b, size_t n,
                    struct tally *t)
{
    t->in_take = true;
    assert_int_equal(cmx_limits_take(c, b, n, tally_cb, t), 0);
    t->in_take = false;
}

/* One take, waited for. */
static struct cmx_limits_result take1(struct cmx_limits_client *c,
                                      const struct cmx_limits_bucket *b, size_t n)
{
    struct tally t = {0};
    do_take(c, b, n, &t);
    run_until(&t.done, 1, 3000);
    assert_int_equal(t.done, 1);
    return t.last;
}

static void close_all(struct cmx_limits_client *c1, struct cmx_limits_client *c2)
{
    cmx_limits_client_close(c1);
    cmx_limits_client_close(c2);
    sleep_loop(20);
}

static void test_two_instances_exact(void **state)
{
    (void)state;
    struct cmx_limits *a = open_instance(CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits *b = open_instance_at("localhost", CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_client *ca, *cb;
    struct cmx_limits_bucket bk = {"tenant:acme:rpm", CMX_LIMITS_REQUESTS, 50, MINUTE, 1, 0, 0};
    struct tally ta = {0}, tb = {0};

    assert_int_equal(cmx_limits_client_new(a, &loop, &ca), 0);
    assert_int_equal(cmx_limits_client_new(b, &loop, &cb), 0);
    /* 20 each, all in flight at once: all fit */
    for (int i = 0; i < 20; i++) {
        do_take(ca, &bk, 1, &ta);
        do_take(cb, &bk, 1, &tb);
    }
    run_until(&ta.done, 20, 5000);
    run_until(&tb.done, 20, 5000);
    assert_int_equal(ta.allowed, 20);
    assert_int_equal(tb.allowed, 20);
    /* then 2 x 60 in flight at once, on two connections: exactly 10 more fit */
    for (int i = 0; i < 60; i++) {
        do_take(ca, &bk, 1, &ta);
        do_take(cb, &bk, 1, &tb);
    }
    run_until(&ta.done, 80, 5000);
    run_until(&tb.done, 80, 5000);
    assert_int_equal(ta.done, 80);
    assert_int_equal(tb.done, 80);
    assert_int_equal(ta.sync + tb.sync, 0); /* connected: answers come from the loop */
    assert_int_equal(ta.allowed + tb.allowed, 50);
    assert_int_equal(ta.denied + tb.denied, 110);
    /* the last answer was a refusal: nothing left, one request per 1.2 s */
    assert_int_equal(tb.last.verdict, CMX_LIMITS_DENY);
    assert_int_equal(tb.last.b[0].remaining, 0);
    assert_true(tb.last.retry_after_us > 0 && tb.last.retry_after_us <= 1200000);
    assert_true(tb.last.b[0].reset_us > 58 * SEC && tb.last.b[0].reset_us <= MINUTE);
    assert_true(cmx_limits_reachable(a));

    struct cmx_limits_counters k;
    cmx_limits_counters(a, &k);
    assert_int_equal(k.allowed, (uint64_t)ta.allowed);
    assert_int_equal(k.denied, (uint64_t)ta.denied);
    assert_int_equal(k.backend_errors, 0);
    close_all(ca, cb);
    cmx_limits_free(a);
    cmx_limits_free(b);
}

/* A quota shared by two instances: exactly as much as the budget, never more. */
static void test_quota_two_instances(void **state)
{
    (void)state;
    struct cmx_limits *a = open_instance(CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits *b = open_instance_at("localhost", CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_client *ca, *cb;
    struct cmx_limits_bucket q = {
        "bud:t:acme:2026-11", CMX_LIMITS_QUOTA, 10000, 0, 700, 300, MINUTE};
    struct tally ta = {0}, tb = {0};

    assert_int_equal(cmx_limits_client_new(a, &loop, &ca), 0);
    assert_int_equal(cmx_limits_client_new(b, &loop, &cb), 0);
    /* 300 spent before; 2 x 20 reservations of 700 in flight: floor(9700 / 700) = 13 fit */
    for (int i = 0; i < 20; i++) {
        do_take(ca, &q, 1, &ta);
        do_take(cb, &q, 1, &tb);
    }
    run_until(&ta.done, 20, 5000);
    run_until(&tb.done, 20, 5000);
    assert_int_equal(ta.allowed + tb.allowed, 13);
    assert_int_equal(ta.denied + tb.denied, 27);
    /* settle all 13 down to 500 each: 300 + 6500 used, 3200 left -> 4 more of 700 */
    q.cost = -200;
    for (int i = 0; i < 13; i++)
        assert_int_equal(cmx_limits_settle(i % 2 ? ca : cb, &q, 1), 0);
    q.cost = 700;
    struct tally tc = {0};
    for (int i = 0; i < 10; i++)
        do_take(i % 2 ? ca : cb, &q, 1, &tc);
    run_until(&tc.done, 10, 5000);
    assert_int_equal(tc.allowed, 4);
    assert_int_equal(tc.last.verdict, CMX_LIMITS_DENY);
    assert_true(tc.last.too_large);
    close_all(ca, cb);
    cmx_limits_free(a);
    cmx_limits_free(b);
}

static void test_all_or_nothing_settle_noscript(void **state)
{
    (void)state;
    struct cmx_limits *a = open_instance(CMX_LIMITS_FAIL_CLOSED);
    struct cmx_limits *b = open_instance(CMX_LIMITS_FAIL_CLOSED);
    struct cmx_limits_client *ca, *cb;
    struct cmx_limits_bucket bk[2] = {{"key:7:rpm", CMX_LIMITS_REQUESTS, 100, MINUTE, 1, 0, 0},
                                      {"key:7:tpm", CMX_LIMITS_TOKENS, 1000, MINUTE, 600, 0, 0}};
    struct cmx_limits_result r;

    assert_int_equal(cmx_limits_client_new(a, &loop, &ca), 0);
    assert_int_equal(cmx_limits_client_new(b, &loop, &cb), 0);
    r = take1(ca, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 99);
    assert_int_equal(r.b[1].remaining, 400);
    /* the other instance sees the same buckets; TPM refuses, RPM is not charged */
    r = take1(cb, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.b[0].allowed);
    assert_false(r.b[1].allowed);
    assert_true(r.b[0].remaining >= 98 && r.b[0].remaining <= 99);
    assert_true(r.retry_after_us > 11 * SEC && r.retry_after_us <= 12 * SEC);
    /* refund 500 of the 600 reserved: 600 fit again (100 + drift used) */
    bk[0].cost = -1; /* and give the request back too */
    bk[1].cost = -500;
    assert_int_equal(cmx_limits_settle(cb, bk, 2), 0);
    bk[0].cost = 1;
    bk[1].cost = 600;
    r = take1(ca, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_true(r.b[1].remaining >= 300 && r.b[1].remaining <= 301);
    assert_true(r.b[0].remaining >= 99); /* the settle refunded the request too */

    /* a flushed script cache (or a fresh Redis) answers NOSCRIPT: EVAL takes over */
    redis_cmd("SCRIPT FLUSH");
    bk[1].cost = 1;
    r = take1(cb, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    r = take1(ca, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    /* too large can never pass */
    bk[1].cost = 1001;
    r = take1(ca, bk, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.too_large);

    struct cmx_limits_counters k;
    cmx_limits_counters(b, &k);
    assert_int_equal(k.backend_errors, 0);
    assert_int_equal(k.fail_closed, 0);
    close_all(ca, cb);
    cmx_limits_free(a);
    cmx_limits_free(b);
}

static void test_down_and_back(void **state)
{
    (void)state;
    struct cmx_limits *open = open_instance(CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits *closed = open_instance(CMX_LIMITS_FAIL_CLOSED);
    struct cmx_limits_client *co, *cc;
    struct cmx_limits_bucket bk = {"key:down:rpm", CMX_LIMITS_REQUESTS, 1000, MINUTE, 1, 0, 0};
    struct cmx_limits_counters k;
    struct cmx_limits_result r;
    struct cmx_buf buf;

    assert_int_equal(cmx_limits_client_new(open, &loop, &co), 0);
    assert_int_equal(cmx_limits_client_new(closed, &loop, &cc), 0);
    assert_int_equal(take1(co, &bk, 1).verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(take1(cc, &bk, 1).verdict, CMX_LIMITS_ALLOW);
    assert_true(cmx_limits_reachable(open));

    stop_redis();
    /* the clients notice (EOF) and answer by policy from now on */
    struct tally to = {0}, tc = {0};
    for (int i = 0; i < 10; i++) {
        do_take(co, &bk, 1, &to);
        do_take(cc, &bk, 1, &tc);
        run_until(&to.done, i + 1, 3000);
        run_until(&tc.done, i + 1, 3000);
    }
    assert_int_equal(to.done, 10);
    assert_int_equal(tc.done, 10);
    assert_int_equal(to.err_allow, 10);
    assert_int_equal(tc.err_deny, 10);
    assert_true(to.last.allowed);
    assert_false(tc.last.allowed);
    assert_true(tc.last.error == CMX_ECONNECT || tc.last.error == CMX_ETIMEOUT);
    assert_int_equal(tc.last.retry_after_us, SEC);
    assert_false(cmx_limits_reachable(open));
    assert_false(cmx_limits_reachable(closed));
    cmx_limits_counters(open, &k);
    assert_int_equal(k.fail_open, 10);
    assert_int_equal(k.fail_closed, 0);
    assert_int_equal(k.backend_errors, 10);
    assert_int_equal(k.allowed, 1);
    cmx_limits_counters(closed, &k);
    assert_int_equal(k.fail_closed, 10);
    assert_int_equal(k.fail_open, 0);
    cmx_buf_init(&buf, 1 << 16);
    assert_int_equal(cmx_limits_render_metrics(closed, &buf), 0);
    assert_non_null(strstr(buf.data, "cloudmux_limits_fail_closed_total 10\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_backend_errors_total 10\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_backend_up{backend=\"redis\"} 0\n"));
    cmx_buf_free(&buf);
    /* settlements while down are lost and counted */
    assert_int_equal(cmx_limits_settle(co, &bk, 1), 0);
    sleep_loop(50);
    cmx_limits_counters(open, &k);
    assert_true(k.backend_errors >= 11);
    assert_int_equal(k.fail_open, 10); /* a settle is not a request */

    /* Redis comes back (empty, no script cached): both reconnect on their own */
    start_redis();
    int ok_o = 0, ok_c = 0;
    for (int i = 0; i < 100 && (ok_o == 0 || ok_c == 0); i++) {
        sleep_loop(50);
        r = take1(co, &bk, 1);
        ok_o += r.verdict == CMX_LIMITS_ALLOW;
        r = take1(cc, &bk, 1);
        ok_c += r.verdict == CMX_LIMITS_ALLOW;
    }
    assert_true(ok_o > 0);
    assert_true(ok_c > 0);
    assert_true(cmx_limits_reachable(open));
    assert_true(cmx_limits_reachable(closed));
    /* and they share one bucket again */
    r = take1(cc, &bk, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    int64_t used = 1000 - r.b[0].remaining;
    assert_true(used >= ok_o + ok_c + 1 - 1 && used <= ok_o + ok_c + 1);
    close_all(co, cc);
    cmx_limits_free(open);
    cmx_limits_free(closed);
}

static void test_timeout(void **state)
{
    (void)state;
    struct cmx_limits *l = open_instance(CMX_LIMITS_FAIL_CLOSED);
    struct cmx_limits_client *c, *c2;
    struct cmx_limits_bucket bk = {"key:slow:rpm", CMX_LIMITS_REQUESTS, 10, MINUTE, 1, 0, 0};
    struct tally t = {0};

    assert_int_equal(cmx_limits_client_new(l, &loop, &c), 0);
    assert_int_equal(take1(c, &bk, 1).verdict, CMX_LIMITS_ALLOW);
    /* a hung Redis: the reply never comes in time, the policy answers */
    kill(redis_pid, SIGSTOP);
    do_take(c, &bk, 1, &t);
    run_until(&t.done, 1, 3000);
    kill(redis_pid, SIGCONT);
    assert_int_equal(t.done, 1);
    assert_int_equal(t.err_deny, 1);
    assert_int_equal(t.last.error, CMX_ETIMEOUT);
    /* a take pending when its client closes is answered (canceled) */
    assert_int_equal(cmx_limits_client_new(l, &loop, &c2), 0);
    struct tally t2 = {0};
    do_take(c2, &bk, 1, &t2); /* still connecting: queued */
    cmx_limits_client_close(c2);
    assert_int_equal(t2.done, 1);
    assert_int_equal(t2.last.error, CMX_ECANCELED);
    cmx_limits_client_close(c);
    sleep_loop(20);
    cmx_limits_free(l);
}

struct closer {
    struct cmx_limits_client *c;
    int done, canceled, allowed;
};

static void closer_cb(void *ud, const struct cmx_limits_result *r)
{
    struct closer *k = ud;
    k->done++;
    k->allowed += r->verdict == CMX_LIMITS_ALLOW;
    k->canceled += r->error == CMX_ECANCELED;
    if (k->done == 1)
        cmx_limits_client_close(k->c); /* from inside a hiredis reply callback */
}

static void test_close_in_callback(void **state)
{
    (void)state;
    struct cmx_limits *l = open_instance(CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket bk = {"key:close:rpm", CMX_LIMITS_REQUESTS, 100, MINUTE, 1, 0, 0};
    struct closer k = {0};
    assert_int_equal(cmx_limits_client_new(l, &loop, &k.c), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(cmx_limits_take(k.c, &bk, 1, closer_cb, &k), 0);
    run_until(&k.done, 5, 3000);
    assert_int_equal(k.done, 5); /* each exactly once */
    assert_int_equal(k.allowed, 1);
    assert_int_equal(k.canceled, 4);
    sleep_loop(20);
    cmx_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_instances_exact),
        cmocka_unit_test(test_quota_two_instances),
        cmocka_unit_test(test_all_or_nothing_settle_noscript),
        cmocka_unit_test(test_down_and_back),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_close_in_callback),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
