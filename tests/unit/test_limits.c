/* Unit tests for src/limits/: the GCRA arithmetic, the memory backend (single thread with
 * an injected clock, then threads hammering shared buckets), OpenAI's headers and the
 * duration format, the config parser, counters and metrics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "limits/limits.h"

#define SEC    INT64_C(1000000)
#define MINUTE (60 * SEC)

static _Atomic int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&fake_now);
}

struct fixture {
    struct cmx_limits *l;
    struct cmx_limits_client *c;
};

static struct fixture open_mem(size_t max_entries, enum cmx_limits_on_error pol)
{
    struct cmx_limits_config cfg;
    struct fixture f;
    cmx_limits_config_init(&cfg);
    cfg.clock_us = fake_clock;
    cfg.on_error = pol;
    if (max_entries != 0)
        cfg.max_entries = max_entries;
    atomic_store(&fake_now, 1000 * SEC);
    assert_int_equal(cmx_limits_new(&cfg, &f.l), 0);
    assert_int_equal(cmx_limits_client_new(f.l, NULL, &f.c), 0);
    return f;
}

static void close_mem(struct fixture *f)
{
    cmx_limits_client_close(f->c);
    cmx_limits_free(f->l);
}

struct got {
    int calls;
    struct cmx_limits_result r;
};

static void got_cb(void *ud, const struct cmx_limits_result *r)
{
    struct got *g = ud;
    g->calls++;
    g->r = *r;
}

/* A take that must complete synchronously (memory backend). */
static struct cmx_limits_result take(struct fixture *f, const struct cmx_limits_bucket *b, size_t n)
{
    struct got g = {0};
    assert_int_equal(cmx_limits_take(f->c, b, n, got_cb, &g), 0);
    assert_int_equal(g.calls, 1);
    return g.r;
}

static struct cmx_limits_bucket rpm(const char *key, int64_t limit)
{
    return (struct cmx_limits_bucket){key, CMX_LIMITS_REQUESTS, limit, MINUTE, 1, 0, 0};
}

static struct cmx_limits_bucket tpm(const char *key, int64_t limit, int64_t cost)
{
    return (struct cmx_limits_bucket){key, CMX_LIMITS_TOKENS, limit, MINUTE, cost, 0, 0};
}

/* ---- GCRA ---- */

static void test_params(void **state)
{
    (void)state;
    struct cmx_limits_item it = {.limit = 600, .period_us = MINUTE};
    assert_int_equal(cmx_limits_gcra_params(&it), 0);
    assert_int_equal(it.unit_level, 100000); /* one request every 100 ms */
    assert_int_equal(it.rate, 1);
    assert_int_equal(it.capacity, 60000000);

    it = (struct cmx_limits_item){.limit = 7, .period_us = MINUTE}; /* 60/7 s: not whole us */
    assert_int_equal(cmx_limits_gcra_params(&it), 0);
    assert_int_equal(it.unit_level, 60000000);
    assert_int_equal(it.rate, 7);
    assert_int_equal(it.capacity, 420000000);
    /* after 8571428 us one request is not quite back; after 8571429 us it is */
    int64_t full = 7 * it.unit_level;
    assert_false(cmx_limits_gcra_fits(&it, cmx_limits_gcra_drain(&it, full, 8571428), 1));
    assert_true(cmx_limits_gcra_fits(&it, cmx_limits_gcra_drain(&it, full, 8571429), 1));

    it = (struct cmx_limits_item){.limit = 0, .period_us = MINUTE};
    assert_int_equal(cmx_limits_gcra_params(&it), CMX_EINVAL);
    it = (struct cmx_limits_item){.limit = 5, .period_us = 0};
    assert_int_equal(cmx_limits_gcra_params(&it), CMX_EINVAL);
    it = (struct cmx_limits_item){.limit = 1000000007, .period_us = 86400 * SEC}; /* too fine */
    assert_int_equal(cmx_limits_gcra_params(&it), CMX_EINVAL);
    it = (struct cmx_limits_item){.limit = 30000000, .period_us = MINUTE}; /* 30M TPM: fine */
    assert_int_equal(cmx_limits_gcra_params(&it), 0);
}

static void test_arith_edges(void **state)
{
    (void)state;
    struct cmx_limits_item it = {.limit = 10, .period_us = MINUTE};
    struct cmx_limits_state st;
    assert_int_equal(cmx_limits_gcra_params(&it), 0);
    /* drain never goes below zero and tolerates huge or negative elapsed times */
    assert_int_equal(cmx_limits_gcra_drain(&it, 5, INT64_MAX), 0);
    assert_int_equal(cmx_limits_gcra_drain(&it, 5 * SEC, -7), 5 * SEC);
    /* add clamps both ways */
    assert_int_equal(cmx_limits_gcra_add(&it, 0, -5), 0);
    assert_int_equal(cmx_limits_gcra_add(&it, 0, INT64_MAX), CMX_LIMITS_MAX_LEVEL);
    assert_int_equal(cmx_limits_gcra_add(&it, CMX_LIMITS_MAX_LEVEL, INT64_MIN), 0);
    /* a bucket in debt: nothing remaining, reset = the whole debt drained */
    cmx_limits_gcra_state(&it, 2 * it.capacity, 1, &st);
    assert_int_equal(st.remaining, 0);
    assert_int_equal(st.reset_us, 2 * MINUTE);
    assert_false(st.allowed);
    assert_int_equal(st.retry_after_us, MINUTE + 6 * SEC);
    /* cost above the limit never fits */
    cmx_limits_gcra_state(&it, 0, 11, &st);
    assert_int_equal(st.retry_after_us, -1);
    assert_int_equal(st.remaining, 10);
    assert_int_equal(st.reset_us, 0);
}

static void test_burst_then_steady(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket b = rpm("key:1:rpm", 10); /* one every 6 s */
    struct cmx_limits_result r;

    for (int i = 0; i < 10; i++) {
        r = take(&f, &b, 1);
        assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
        assert_int_equal(r.b[0].limit, 10);
        assert_int_equal(r.b[0].remaining, 9 - i);
        assert_int_equal(r.b[0].reset_us, (i + 1) * 6 * SEC);
    }
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_false(r.allowed);
    assert_false(r.too_large);
    assert_int_equal(r.retry_after_us, 6 * SEC);
    assert_int_equal(r.b[0].remaining, 0);
    assert_int_equal(r.b[0].reset_us, MINUTE);

    /* one microsecond short of the emission interval: still refused, and exactly 1 us */
    atomic_fetch_add(&fake_now, 6 * SEC - 1);
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_int_equal(r.retry_after_us, 1);
    atomic_fetch_add(&fake_now, 1);
    /* then one request per 6 s, never two */
    for (int i = 0; i < 5; i++) {
        r = take(&f, &b, 1);
        assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
        assert_int_equal(r.b[0].remaining, 0);
        assert_int_equal(r.b[0].reset_us, MINUTE);
        r = take(&f, &b, 1);
        assert_int_equal(r.verdict, CMX_LIMITS_DENY);
        assert_int_equal(r.retry_after_us, 6 * SEC);
        atomic_fetch_add(&fake_now, 6 * SEC);
    }
    /* idle for a period: the whole burst is back */
    atomic_fetch_add(&fake_now, MINUTE);
    for (int i = 0; i < 10; i++)
        assert_int_equal(take(&f, &b, 1).verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(take(&f, &b, 1).verdict, CMX_LIMITS_DENY);
    close_mem(&f);
}

static void test_all_or_nothing(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket b[4] = {rpm("key:1:rpm", 100), tpm("key:1:tpm", 1000, 600),
                                     rpm("tenant:a:rpm", 3), tpm("tenant:a:tpm", 5000, 600)};
    struct cmx_limits_result r = take(&f, b, 4);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.b[0].remaining, 99);
    assert_int_equal(r.b[1].remaining, 400);
    assert_int_equal(r.b[2].remaining, 2);
    assert_int_equal(r.b[3].remaining, 4400);

    /* the key's TPM refuses 600 more: nothing is charged anywhere */
    r = take(&f, b, 4);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.b[0].allowed);
    assert_false(r.b[1].allowed);
    assert_true(r.b[2].allowed);
    assert_int_equal(r.b[0].remaining, 99); /* uncharged */
    assert_int_equal(r.b[1].remaining, 400);
    assert_int_equal(r.b[2].remaining, 2);
    assert_int_equal(r.b[3].remaining, 4400);
    /* 200 more tokens needed at 1000/min: 12 s */
    assert_int_equal(r.retry_after_us, 12 * SEC);

    /* a smaller request fits: the refused one left the budgets intact */
    b[1].cost = b[3].cost = 400;
    r = take(&f, b, 4);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 98);
    assert_int_equal(r.b[1].remaining, 0);
    assert_int_equal(r.b[2].remaining, 1);
    assert_int_equal(r.b[3].remaining, 4000);

    /* now the tenant's RPM (1 left) and the key's TPM both refuse: the longest wait wins */
    b[1].cost = b[3].cost = 0;
    r = take(&f, b, 4);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW); /* cost 0 fits an exactly full bucket */
    r = take(&f, b, 4);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_false(r.b[2].allowed);
    assert_int_equal(r.retry_after_us, 20 * SEC); /* tenant RPM 3: one every 20 s */
    close_mem(&f);
}

static void test_settle(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket b = tpm("key:9:tpm", 1000, 800);
    struct cmx_limits_result r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 200);
    assert_int_equal(r.b[0].reset_us, 48 * SEC);

    /* the request used 300 of its 800 reserved tokens: refund 500 */
    b.cost = 300 - 800;
    assert_int_equal(cmx_limits_settle(f.c, &b, 1), 0);
    b.cost = 700;
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 0);

    /* it used 1700 instead of 700: the bucket goes 1000 tokens into debt */
    b.cost = 1000;
    assert_int_equal(cmx_limits_settle(f.c, &b, 1), 0);
    b.cost = 0;
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_int_equal(r.b[0].remaining, 0);
    assert_int_equal(r.b[0].reset_us, 2 * MINUTE);
    assert_int_equal(r.retry_after_us, MINUTE);

    /* a refund never makes more than a full bucket */
    b.cost = -1000000;
    assert_int_equal(cmx_limits_settle(f.c, &b, 1), 0);
    b.cost = 1;
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 999);

    /* more than the limit can never pass */
    b.cost = 1001;
    r = take(&f, &b, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.too_large);
    assert_int_equal(r.b[0].retry_after_us, -1);
    assert_int_equal(r.retry_after_us, 0);
    close_mem(&f);
}

/* A quota (a budget): never refills, starts at init, settles both ways, expires after ttl. */
static void test_quota(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket q = {
        "bud:t:acme:2026-11", CMX_LIMITS_QUOTA, 1000, 0, 300, 250, MINUTE};
    struct cmx_limits_result r = take(&f, &q, 1); /* 250 already spent + 300 */
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 450);
    r = take(&f, &q, 1);
    assert_int_equal(r.b[0].remaining, 150);
    /* no refill with time */
    atomic_fetch_add(&fake_now, 30 * SEC);
    r = take(&f, &q, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.too_large); /* waiting does not help a budget */
    assert_int_equal(r.b[0].remaining, 150);
    /* settle the first two: they cost 100 each, not 300 */
    q.cost = -400;
    assert_int_equal(cmx_limits_settle(f.c, &q, 1), 0);
    q.cost = 300;
    r = take(&f, &q, 1);
    assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
    assert_int_equal(r.b[0].remaining, 250);
    /* a later init does not reset a live bucket; a changed limit keeps the same bucket */
    q.init = 0;
    q.limit = 2000;
    q.cost = 0;
    r = take(&f, &q, 1);
    assert_int_equal(r.b[0].remaining, 1250);
    /* all or nothing with a rate limit: a refused quota charges no request */
    struct cmx_limits_bucket both[2] = {rpm("key:1:rpm", 10), q};
    both[1].cost = 5000;
    r = take(&f, both, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    assert_true(r.b[0].allowed);
    assert_false(r.b[1].allowed);
    r = take(&f, both, 1);
    assert_int_equal(r.b[0].remaining, 9);
    /* a minute without changes: dropped, and back at init */
    atomic_fetch_add(&fake_now, MINUTE + SEC);
    q.init = 100;
    q.cost = 0;
    r = take(&f, &q, 1);
    assert_int_equal(r.b[0].remaining, 1900);
    /* validation */
    struct cmx_limits_bucket bad = q;
    bad.ttl_us = 0;
    struct got g = {0};
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    bad = q;
    bad.init = -1;
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    assert_int_equal(g.calls, 0);
    close_mem(&f);
}

static void test_validation(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct got g = {0};
    char longkey[CMX_LIMITS_KEY_MAX + 2];
    struct cmx_limits_bucket b[9];
    for (int i = 0; i < 9; i++) {
        static char names[9][8];
        snprintf(names[i], sizeof(names[i]), "k%d", i);
        b[i] = rpm(names[i], 5);
    }
    assert_int_equal(cmx_limits_take(f.c, b, 0, got_cb, &g), CMX_EINVAL);
    assert_int_equal(cmx_limits_take(f.c, b, 9, got_cb, &g), CMX_EINVAL);
    assert_int_equal(cmx_limits_take(f.c, b, 8, got_cb, &g), 0);
    assert_int_equal(g.calls, 1);
    struct cmx_limits_bucket dup[2] = {rpm("same", 5), rpm("same", 5)};
    assert_int_equal(cmx_limits_take(f.c, dup, 2, got_cb, &g), CMX_EINVAL);
    dup[1].limit = 6; /* another limit: another bucket */
    assert_int_equal(cmx_limits_take(f.c, dup, 2, got_cb, &g), 0);
    struct cmx_limits_bucket bad = rpm("x", 5);
    bad.cost = -1;
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    assert_int_equal(cmx_limits_settle(f.c, &bad, 1), 0); /* settles may refund */
    bad = rpm("", 5);
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    bad = rpm(longkey, 5);
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    longkey[CMX_LIMITS_KEY_MAX] = '\0';
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), 0);
    bad = rpm("x", 0);
    assert_int_equal(cmx_limits_take(f.c, &bad, 1, got_cb, &g), CMX_EINVAL);
    assert_int_equal(g.calls, 3);
    close_mem(&f);
}

/* ---- memory backend: expiry, capacity ---- */

static void test_expiry_and_cap(void **state)
{
    (void)state;
    /* 64 stripes x 64 entries at most */
    struct fixture f = open_mem(64 * 64, CMX_LIMITS_FAIL_CLOSED);
    struct cmx_limits_counters k;
    char key[32];
    int full = 0;
    for (int i = 0; i < 6000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        struct cmx_limits_bucket b = rpm(key, 10);
        struct cmx_limits_result r = take(&f, &b, 1);
        if (r.verdict == CMX_LIMITS_ERROR_DENY) {
            assert_int_equal(r.error, CMX_ENOMEM);
            full++;
        } else {
            assert_int_equal(r.verdict, CMX_LIMITS_ALLOW);
        }
    }
    /* live buckets are never dropped: the table fills up and the policy answers */
    assert_true(full >= 6000 - 64 * 64);
    assert_true(full < 6000);
    cmx_limits_counters(f.l, &k);
    assert_int_equal(k.fail_closed, (uint64_t)full);
    assert_int_equal(k.backend_errors, (uint64_t)full);
    assert_int_equal(k.allowed, (uint64_t)(6000 - full));
    /* once they have drained they are swept: new keys fit again */
    atomic_fetch_add(&fake_now, 6 * SEC);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "n%d", i);
        struct cmx_limits_bucket b = rpm(key, 10);
        assert_int_equal(take(&f, &b, 1).verdict, CMX_LIMITS_ALLOW);
    }
    /* and a swept bucket is the same as a fresh one: k0 had 1 taken, now 10 remain */
    struct cmx_limits_bucket b = rpm("k0", 10);
    assert_int_equal(take(&f, &b, 1).b[0].remaining, 9);
    close_mem(&f);
}

/* ---- memory backend under threads ---- */

#define THREADS    8
#define PER_THREAD 3000
#define SHARED_RPM 5000
#define TENANT_TPM 40000

struct hammer {
    struct cmx_limits *l;
    int id;
    int accepted;
    int refused;
};

static void hammer_cb(void *ud, const struct cmx_limits_result *r)
{
    struct hammer *h = ud;
    if (r->verdict == CMX_LIMITS_ALLOW)
        h->accepted++;
    else if (r->verdict == CMX_LIMITS_DENY)
        h->refused++;
}

static void hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct cmx_limits_client *c;
    char own[32];
    if (cmx_limits_client_new(h->l, NULL, &c) != 0)
        return;
    snprintf(own, sizeof(own), "key:%d:rpm", h->id);
    for (int i = 0; i < PER_THREAD; i++) {
        /* one shared bucket, one of this thread's own, and a shared token bucket */
        struct cmx_limits_bucket b[3] = {rpm("tenant:t:rpm", SHARED_RPM), rpm(own, 1000000),
                                         tpm("tenant:t:tpm", TENANT_TPM, 1 + i % 13)};
        cmx_limits_take(c, b, 3, hammer_cb, h);
    }
    cmx_limits_client_close(c);
}

static void test_threads_exact(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct hammer h[THREADS];
    uv_thread_t t[THREADS];
    struct cmx_limits_counters k;
    int accepted = 0, refused = 0;

    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){.l = f.l, .id = i};
        assert_int_equal(uv_thread_create(&t[i], hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        uv_thread_join(&t[i]);
        accepted += h[i].accepted;
        refused += h[i].refused;
    }
    assert_int_equal(accepted + refused, THREADS * PER_THREAD);
    /* frozen clock: whichever bucket runs out first, the shared buckets are exact */
    struct cmx_limits_bucket probe[2] = {rpm("tenant:t:rpm", SHARED_RPM),
                                         tpm("tenant:t:tpm", TENANT_TPM, 0)};
    probe[0].cost = 0; /* look without charging */
    struct cmx_limits_result r = take(&f, probe, 2);
    assert_int_equal(r.b[0].remaining, SHARED_RPM - accepted);
    assert_true(accepted > 0);
    /* no bucket can have been charged by a refused take: rpm + tpm agree with accepted */
    int64_t tokens = TENANT_TPM - r.b[1].remaining;
    assert_true(tokens >= accepted && tokens <= 13 * (int64_t)accepted);
    assert_true(accepted == SHARED_RPM || r.b[1].remaining < 13);
    cmx_limits_counters(f.l, &k);
    assert_int_equal(k.allowed, (uint64_t)accepted + 1);
    assert_int_equal(k.denied, (uint64_t)refused);
    close_mem(&f);
}

struct exact_arg {
    struct cmx_limits *l;
    int accepted;
};

static void exact_cb(void *ud, const struct cmx_limits_result *r)
{
    struct exact_arg *a = ud;
    a->accepted += r->verdict == CMX_LIMITS_ALLOW;
}

static void exact_main(void *arg)
{
    struct exact_arg *a = arg;
    struct cmx_limits_client *c;
    if (cmx_limits_client_new(a->l, NULL, &c) != 0)
        return;
    for (int i = 0; i < PER_THREAD; i++) {
        struct cmx_limits_bucket b = rpm("hot", 1234);
        cmx_limits_take(c, &b, 1, exact_cb, a);
        /* time moves while they hammer: 100 us per take on each thread */
        atomic_fetch_add(&fake_now, 100);
    }
    cmx_limits_client_close(c);
}

static void test_threads_one_key_moving_clock(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct exact_arg a[THREADS];
    uv_thread_t t[THREADS];
    int accepted = 0;
    int64_t start = atomic_load(&fake_now);
    for (int i = 0; i < THREADS; i++) {
        a[i] = (struct exact_arg){.l = f.l};
        assert_int_equal(uv_thread_create(&t[i], exact_main, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        uv_thread_join(&t[i]);
        accepted += a[i].accepted;
    }
    int64_t elapsed = atomic_load(&fake_now) - start; /* 2.4 s */
    /* GCRA bound: the burst plus what refilled (1234/min over elapsed), and no more; the
     * final instant's refill may be short by one */
    int64_t bound = 1234 + elapsed * 1234 / MINUTE;
    assert_true(accepted <= bound);
    assert_true(accepted >= bound - 1);
    close_mem(&f);
}

/* ---- headers ---- */

static void want_duration(int64_t us, const char *want)
{
    char buf[32];
    size_t n = cmx_limits_format_duration(us, buf, sizeof(buf));
    if (strcmp(buf, want) != 0 || n != strlen(want))
        fail_msg("%lld us: got \"%s\", want \"%s\"", (long long)us, buf, want);
}

static void test_duration(void **state)
{
    (void)state;
    want_duration(0, "0s");
    want_duration(-5, "0s");
    want_duration(1, "1ms"); /* rounded up: never "0s" before the bucket is full */
    want_duration(20000, "20ms");
    want_duration(999000, "999ms");
    want_duration(999001, "1s");
    want_duration(SEC, "1s");
    want_duration(17280000, "17.28s");
    want_duration(7660000, "7.66s");
    want_duration(60 * SEC, "1m0s");
    want_duration(360 * SEC, "6m0s");
    want_duration(61001000, "1m1.001s");
    want_duration(74400000, "1m14.4s");
    want_duration(3600 * SEC, "1h0m0s");
    want_duration(3723500000, "1h2m3.5s");
    want_duration(100 * 3600 * SEC, "100h0m0s");
    char small[4];
    assert_int_equal(cmx_limits_format_duration(3723500000, small, sizeof(small)), 3);
    assert_string_equal(small, "1h2");
}

static const char *hdr(const struct cmx_limits_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->h[i].name, name) == 0)
            return h->h[i].value;
    return NULL;
}

static void test_headers(void **state)
{
    (void)state;
    struct cmx_limits_headers h;
    struct cmx_limits_result r = {.verdict = CMX_LIMITS_ALLOW, .allowed = true, .n = 4};
    r.b[0] = (struct cmx_limits_state){CMX_LIMITS_REQUESTS, 600, 599, 100000, 0, true};
    r.b[1] = (struct cmx_limits_state){CMX_LIMITS_TOKENS, 200000, 150000, 15 * SEC, 0, true};
    r.b[2] = (struct cmx_limits_state){CMX_LIMITS_REQUESTS, 60, 12, 48 * SEC, 0, true};
    r.b[3] = (struct cmx_limits_state){CMX_LIMITS_TOKENS, 10000000, 150000, 360 * SEC, 0, true};
    cmx_limits_headers(&r, &h);
    assert_int_equal(h.n, 6);
    /* the most constrained of each kind: tenant RPM (12 left), then the longer reset */
    assert_string_equal(hdr(&h, "x-ratelimit-limit-requests"), "60");
    assert_string_equal(hdr(&h, "x-ratelimit-remaining-requests"), "12");
    assert_string_equal(hdr(&h, "x-ratelimit-reset-requests"), "48s");
    assert_string_equal(hdr(&h, "x-ratelimit-limit-tokens"), "10000000");
    assert_string_equal(hdr(&h, "x-ratelimit-remaining-tokens"), "150000");
    assert_string_equal(hdr(&h, "x-ratelimit-reset-tokens"), "6m0s");
    assert_null(hdr(&h, "retry-after"));

    r.verdict = CMX_LIMITS_DENY;
    r.allowed = false;
    r.retry_after_us = 1200001;
    cmx_limits_headers(&r, &h);
    assert_int_equal(h.n, 8);
    assert_string_equal(hdr(&h, "retry-after"), "2"); /* seconds, rounded up */
    assert_string_equal(hdr(&h, "retry-after-ms"), "1201");
    r.retry_after_us = 20000; /* 20 ms: still at least 1 s */
    cmx_limits_headers(&r, &h);
    assert_string_equal(hdr(&h, "retry-after"), "1");
    assert_string_equal(hdr(&h, "retry-after-ms"), "20");
    r.too_large = true; /* retrying cannot help */
    cmx_limits_headers(&r, &h);
    assert_null(hdr(&h, "retry-after"));

    /* only requests buckets: no -tokens headers */
    r = (struct cmx_limits_result){.verdict = CMX_LIMITS_ALLOW, .allowed = true, .n = 1};
    r.b[0] = (struct cmx_limits_state){CMX_LIMITS_REQUESTS, 600, 599, 100000, 0, true};
    cmx_limits_headers(&r, &h);
    assert_int_equal(h.n, 3);
    assert_string_equal(hdr(&h, "x-ratelimit-reset-requests"), "100ms");
    assert_null(hdr(&h, "x-ratelimit-limit-tokens"));

    /* backend errors: fail_open says nothing, fail_closed asks to retry in a second */
    r = (struct cmx_limits_result){.verdict = CMX_LIMITS_ERROR_ALLOW, .allowed = true};
    cmx_limits_headers(&r, &h);
    assert_int_equal(h.n, 0);
    r = (struct cmx_limits_result){.verdict = CMX_LIMITS_ERROR_DENY, .retry_after_us = SEC};
    cmx_limits_headers(&r, &h);
    assert_int_equal(h.n, 2);
    assert_string_equal(hdr(&h, "retry-after"), "1");
}

static void test_headers_from_take(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket b[2] = {rpm("k:rpm", 3), tpm("k:tpm", 90, 30)};
    struct cmx_limits_headers h;
    struct cmx_limits_result r = take(&f, b, 2);
    cmx_limits_headers(&r, &h);
    assert_string_equal(hdr(&h, "x-ratelimit-remaining-requests"), "2");
    assert_string_equal(hdr(&h, "x-ratelimit-reset-requests"), "20s");
    assert_string_equal(hdr(&h, "x-ratelimit-remaining-tokens"), "60");
    assert_string_equal(hdr(&h, "x-ratelimit-reset-tokens"), "20s");
    take(&f, b, 2);
    take(&f, b, 2);
    atomic_fetch_add(&fake_now, 500000);
    r = take(&f, b, 2);
    assert_int_equal(r.verdict, CMX_LIMITS_DENY);
    cmx_limits_headers(&r, &h);
    assert_string_equal(hdr(&h, "x-ratelimit-remaining-requests"), "0");
    assert_string_equal(hdr(&h, "x-ratelimit-reset-requests"), "59.5s");
    assert_string_equal(hdr(&h, "retry-after"), "20");
    assert_string_equal(hdr(&h, "retry-after-ms"), "19500");
    close_mem(&f);
}

/* ---- config ---- */

static void want_parse(const char *s, enum cmx_limits_backend be, const char *host, int port,
                       int db)
{
    struct cmx_limits_config c;
    char err[200];
    cmx_limits_config_init(&c);
    int rc = cmx_limits_config_parse(&c, s, strlen(s), err, sizeof(err));
    if (rc != 0)
        fail_msg("\"%s\": %s", s, err);
    assert_int_equal(c.backend, be);
    if (be == CMX_LIMITS_REDIS) {
        assert_string_equal(c.host, host);
        assert_int_equal(c.port, port);
        assert_int_equal(c.db, db);
    }
}

static void want_bad(const char *s, const char *msg_part)
{
    struct cmx_limits_config c;
    char err[200];
    cmx_limits_config_init(&c);
    int rc = cmx_limits_config_parse(&c, s, strlen(s), err, sizeof(err));
    if (rc != CMX_ECONFIG)
        fail_msg("\"%s\": rc %d, want CMX_ECONFIG", s, rc);
    if (strstr(err, msg_part) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", s, err, msg_part);
    assert_int_equal(c.backend, CMX_LIMITS_MEMORY); /* untouched */
}

static void test_config_parse(void **state)
{
    (void)state;
    want_parse("memory", CMX_LIMITS_MEMORY, NULL, 0, 0);
    want_parse("redis://127.0.0.1:6379", CMX_LIMITS_REDIS, "127.0.0.1", 6379, 0);
    want_parse("redis://redis.internal", CMX_LIMITS_REDIS, "redis.internal", 6379, 0);
    want_parse("redis://r:7000/3", CMX_LIMITS_REDIS, "r", 7000, 3);
    want_parse("redis://r/", CMX_LIMITS_REDIS, "r", 6379, 0);
    want_parse("redis://[::1]:6380/1", CMX_LIMITS_REDIS, "::1", 6380, 1);
    want_parse("redis://:s3cret@r:1", CMX_LIMITS_REDIS, "r", 1, 0);

    struct cmx_limits_config c;
    char err[200];
    cmx_limits_config_init(&c);
    assert_int_equal(cmx_limits_config_parse(&c, "redis://app:pa:ss@h:2/4", 23, err, 200), 0);
    assert_string_equal(c.user, "app");
    assert_string_equal(c.password, "pa:ss");
    char desc[128];
    cmx_limits_config_describe(&c, desc, sizeof(desc));
    assert_string_equal(desc, "redis://h:2/4 (fail_open, auth)");

    want_bad("", "empty");
    want_bad("memcached", "expected memory or redis://");
    want_bad("Memory", "expected memory");
    want_bad("rediss://h:1", "TLS");
    want_bad("redis://", "no host");
    want_bad("redis://:6379", "no host");
    want_bad("redis://h:0", "port");
    want_bad("redis://h:65536", "port");
    want_bad("redis://h:12x", "port");
    want_bad("redis://h:", "port");
    want_bad("redis://h:1/x", "database");
    want_bad("redis://h:1/99999", "database");
    want_bad("redis://h:1?db=2", "port");
    want_bad("redis://h?db=2", "unexpected character '?'");
    want_bad("redis://h:1/2?x", "database");
    want_bad("redis://h h", "unexpected character");
    want_bad("redis://[::1", "unterminated");
    want_bad("redis://[zz]:1", "IPv6");
    want_bad("redis://justpass@h", "[user]:password@");
    want_bad("redis://u:@h", "empty Redis password");
    /* the password never appears in a message */
    const char *secret_urls[] = {"redis://u:TOPSECRET@h:99999", "redis://u:TOPSECRET@",
                                 "redis://u:TOPSECRET@h:1/zz", "redis://TOPSECRET@h"};
    for (size_t i = 0; i < sizeof(secret_urls) / sizeof(secret_urls[0]); i++) {
        cmx_limits_config_init(&c);
        assert_int_equal(
            cmx_limits_config_parse(&c, secret_urls[i], strlen(secret_urls[i]), err, sizeof(err)),
            CMX_ECONFIG);
        if (strstr(err, "TOPSECRET") != NULL || strstr(err, "u:") != NULL)
            fail_msg("secret in \"%s\"", err);
        assert_string_equal(c.password, "");
    }
    /* not NUL-terminated input: only len bytes count */
    cmx_limits_config_init(&c);
    assert_int_equal(cmx_limits_config_parse(&c, "memoryXYZ", 6, err, sizeof(err)), 0);
    assert_int_equal(cmx_limits_config_parse(&c, "redis://h:12345", 11, err, sizeof(err)), 0);
    assert_string_equal(c.host, "h");
    assert_int_equal(c.port, 1);
}

static int parse_map(struct cmx_limits_config *c, const char *const *kv, size_t n, char *err)
{
    const char *keys[8], *vals[8];
    size_t lens[8];
    for (size_t i = 0; i < n; i++) {
        keys[i] = kv[2 * i];
        vals[i] = kv[2 * i + 1];
        lens[i] = strlen(vals[i]);
    }
    return cmx_limits_config_parse_map(c, keys, vals, lens, n, err, 200);
}

static void test_config_map(void **state)
{
    (void)state;
    struct cmx_limits_config c;
    char err[200];
    cmx_limits_config_init(&c);
    assert_int_equal(c.on_error, CMX_LIMITS_FAIL_OPEN);
    const char *ok[] = {"url", "redis://10.0.0.5:6390/2", "on_error", "fail_closed", "timeout_ms",
                        "250"};
    assert_int_equal(parse_map(&c, ok, 3, err), 0);
    assert_int_equal(c.backend, CMX_LIMITS_REDIS);
    assert_string_equal(c.host, "10.0.0.5");
    assert_int_equal(c.port, 6390);
    assert_int_equal(c.db, 2);
    assert_int_equal(c.on_error, CMX_LIMITS_FAIL_CLOSED);
    assert_int_equal(c.timeout_ms, 250);

    const char *no_url[] = {"on_error", "fail_open"};
    cmx_limits_config_init(&c);
    assert_int_equal(parse_map(&c, no_url, 1, err), CMX_ECONFIG);
    assert_non_null(strstr(err, "needs url"));
    const char *bad_pol[] = {"url", "memory", "on_error", "fail_sometimes"};
    assert_int_equal(parse_map(&c, bad_pol, 2, err), CMX_ECONFIG);
    assert_non_null(strstr(err, "fail_open or fail_closed"));
    const char *unknown[] = {"url", "memory", "onerror", "fail_open"};
    assert_int_equal(parse_map(&c, unknown, 2, err), CMX_ECONFIG);
    assert_non_null(strstr(err, "unknown key 'onerror'"));
    const char *twice[] = {"url", "memory", "url", "memory"};
    assert_int_equal(parse_map(&c, twice, 2, err), CMX_ECONFIG);
    assert_non_null(strstr(err, "twice"));
    const char *bad_to[] = {"url", "memory", "timeout_ms", "0"};
    assert_int_equal(parse_map(&c, bad_to, 2, err), CMX_ECONFIG);
    /* a failed map leaves the config untouched */
    assert_int_equal(c.backend, CMX_LIMITS_MEMORY);
    assert_int_equal(c.timeout_ms, 500);
    const char *mem[] = {"url", "memory", "on_error", "fail_closed"};
    assert_int_equal(parse_map(&c, mem, 2, err), 0);
    assert_int_equal(c.backend, CMX_LIMITS_MEMORY);
}

/* ---- counters and metrics ---- */

static void test_metrics(void **state)
{
    (void)state;
    struct fixture f = open_mem(0, CMX_LIMITS_FAIL_OPEN);
    struct cmx_limits_bucket b = rpm("m", 2);
    struct cmx_buf buf;
    take(&f, &b, 1);
    take(&f, &b, 1);
    take(&f, &b, 1);
    /* a second client's counts are summed in, and kept once it closes */
    struct cmx_limits_client *c2;
    assert_int_equal(cmx_limits_client_new(f.l, NULL, &c2), 0);
    struct got g = {0};
    assert_int_equal(cmx_limits_take(c2, &b, 1, got_cb, &g), 0);
    assert_int_equal(g.r.verdict, CMX_LIMITS_DENY);
    cmx_limits_client_close(c2);
    assert_true(cmx_limits_reachable(f.l));
    assert_string_equal(cmx_limits_backend_name(f.l), "memory");
    cmx_buf_init(&buf, 1 << 16);
    assert_int_equal(cmx_limits_render_metrics(f.l, &buf), 0);
    assert_non_null(strstr(buf.data, "cloudmux_limits_decisions_total{result=\"allowed\"} 2\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_decisions_total{result=\"denied\"} 2\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_backend_errors_total 0\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_fail_open_total 0\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_fail_closed_total 0\n"));
    assert_non_null(strstr(buf.data, "cloudmux_limits_backend_up{backend=\"memory\"} 1\n"));
    cmx_buf_free(&buf);
    close_mem(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_arith_edges),
        cmocka_unit_test(test_burst_then_steady),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_settle),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_expiry_and_cap),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_threads_exact),
        cmocka_unit_test(test_threads_one_key_moving_clock),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_headers_from_take),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_map),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
