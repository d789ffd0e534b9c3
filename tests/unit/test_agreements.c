/* Unit tests for src/agreements/ and src/core/clock.c: the rules at every boundary (day
 * before/of/after each launch, holdback end, opt-outs, licence end, amendments,
 * exclusivity, the maker's own cloud, ungoverned models, several reasons at once), the
 * request path (capabilities, filter, 403 message, x-cloudmux-agreement) and revenue
 * shares. Each decision is checked both through the precomputed intervals (what routing
 * uses) and by direct evaluation of the terms. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreements/agreements.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "router/router.h"

/* ---- clock ------------------------------------------------------------------------- */

static int64_t T(const char *s)
{
    int64_t ms = -1;
    if (cmx_clock_parse_iso(s, strlen(s), &ms, NULL) != 0)
        fail_msg("bad time in test: %s", s);
    return ms;
}

static void test_clock_parse(void **state)
{
    int64_t ms;
    bool is_date;
    char buf[40];
    (void)state;

    assert_int_equal(cmx_clock_parse_date("1970-01-01", 10, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(cmx_clock_parse_date("2026-08-07", 10, &ms), 0);
    assert_int_equal(ms, INT64_C(1786060800000));
    assert_int_equal(cmx_clock_parse_iso("2026-08-07", 10, &ms, &is_date), 0);
    assert_true(is_date);
    assert_int_equal(cmx_clock_parse_iso("2026-08-07T12:00:00Z", 20, &ms, &is_date), 0);
    assert_false(is_date);
    assert_int_equal(ms, INT64_C(1786060800000) + 12 * 3600000);
    assert_int_equal(T("2026-08-07T12:00:00.5Z"), T("2026-08-07T12:00:00Z") + 500);
    assert_int_equal(T("2026-08-07T12:00:00.123456Z"), T("2026-08-07T12:00:00Z") + 123);
    assert_int_equal(T("2026-08-07T14:00:00+02:00"), T("2026-08-07T12:00:00Z"));
    assert_int_equal(T("2026-08-07T10:30:00-01:30"), T("2026-08-07T12:00:00Z"));
    assert_int_equal(T("2026-08-07T12:00Z"), T("2026-08-07T12:00:00Z"));
    assert_int_equal(T("2024-02-29"), T("2024-02-28") + CMX_CLOCK_DAY_MS);
    assert_int_equal(T("2000-03-01"), T("2000-02-29") + CMX_CLOCK_DAY_MS);
    assert_int_equal(T("9999-12-31T23:59:59.999Z"), T("9999-12-31") + CMX_CLOCK_DAY_MS - 1);

    static const char *const bad[] = {
        "",
        "2026-8-07",
        "2026-02-29",
        "2100-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-01-32",
        "1969-12-31",
        "2026-08-07T",
        "2026-08-07T12:00:00",
        "2026-08-07T24:00:00Z",
        "2026-08-07T12:60:00Z",
        "2026-08-07T12:00:60Z",
        "2026-08-07 12:00:00Z",
        "2026-08-07T12:00:00.Z",
        "2026-08-07T12:00:00Zx",
        "2026-08-07T12:00:00+2:00",
        "+2026-08-07",
        "2026-08-07x",
        "1970-01-01T00:00:00+00:01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cmx_clock_parse_iso(bad[i], strlen(bad[i]), &ms, NULL) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_not_equal(cmx_clock_parse_date("2026-08-07T00:00:00Z", 20, &ms), 0);

    cmx_clock_format_date(T("2026-08-07T23:59:59.999Z"), buf, sizeof(buf));
    assert_string_equal(buf, "2026-08-07");
    cmx_clock_format_iso(T("2026-08-07T12:34:56Z"), buf, sizeof(buf));
    assert_string_equal(buf, "2026-08-07T12:34:56Z");
    cmx_clock_format_iso(T("2026-08-07T12:34:56.007Z"), buf, sizeof(buf));
    assert_string_equal(buf, "2026-08-07T12:34:56.007Z");
    cmx_clock_format_short(T("2026-08-07"), buf, sizeof(buf));
    assert_string_equal(buf, "2026-08-07");
    cmx_clock_format_short(T("2026-08-07T00:00:01Z"), buf, sizeof(buf));
    assert_string_equal(buf, "2026-08-07T00:00:01Z");
    cmx_clock_format_date(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31");
    assert_int_equal(cmx_clock_day_start(T("2026-08-07T12:00:00Z")), T("2026-08-07"));
    assert_int_equal(cmx_clock_day_start(-1), -CMX_CLOCK_DAY_MS);

    /* Round trips over four centuries of days. */
    for (int64_t d = 0; d < 146097 * 2; d += 7) {
        int64_t back;
        cmx_clock_format_date(d * CMX_CLOCK_DAY_MS, buf, sizeof(buf));
        assert_int_equal(cmx_clock_parse_date(buf, strlen(buf), &back), 0);
        assert_int_equal(back, d * CMX_CLOCK_DAY_MS);
    }
}

static void test_clock_freeze(void **state)
{
    (void)state;
    uint64_t now = cmx_clock_now_ms();
    assert_true(now > (uint64_t)T("2024-01-01"));
    assert_false(cmx_clock_frozen());
    cmx_clock_freeze((uint64_t)T("2026-12-01"));
    assert_true(cmx_clock_frozen());
    assert_int_equal(cmx_clock_now_ms(), (uint64_t)T("2026-12-01"));
    cmx_clock_freeze(0);
    assert_int_equal(cmx_clock_now_ms(), 0);
    cmx_clock_unfreeze();
    assert_false(cmx_clock_frozen());
    assert_true(cmx_clock_now_ms() >= now);
}

/* ---- the fixture ------------------------------------------------------------------- */

/* Products p5 (launched everywhere in August), p6 (AWS launches before the primary), rt
 * (opted out by the primary), emb (not core); agreement ms amends exclusivity into first
 * launch with a 5-day holdback; goog's second version is an exclusive licence; openai is
 * the maker. */
static const char fixture[] =
    "providers:\n"
    "  - { name: az, type: openai_compatible, cloud: azure, base_url: http://127.0.0.1:1 }\n"
    "  - { name: aws, type: openai_compatible, cloud: aws, base_url: http://127.0.0.1:2 }\n"
    "  - { name: gcp, type: openai_compatible, cloud: gcp, base_url: http://127.0.0.1:3 }\n"
    "  - { name: oa, type: openai_compatible, cloud: openai, base_url: http://127.0.0.1:4 }\n"
    "models:\n"
    "  - name: p5\n"
    "    deployments: [{ provider: az, model: x }, { provider: aws, model: x },\n"
    "                  { provider: gcp, model: x }, { provider: oa, model: x }]\n"
    "  - name: gpt-6\n"
    "    product: p6\n"
    "    deployments: [{ provider: az, model: x }, { provider: aws, model: x },\n"
    "                  { provider: oa, model: x }]\n"
    "  - name: rt\n"
    "    deployments: [{ provider: aws, model: x }, { provider: oa, model: x }]\n"
    "  - name: emb\n"
    "    deployments: [{ provider: az, model: x }, { provider: aws, model: x }]\n"
    "  - name: llama\n"
    "    deployments: [{ provider: aws, model: x }, { provider: gcp, model: x }]\n"
    "maker: openai\n"
    "products:\n"
    "  - name: p5\n"
    "    core: true\n"
    "    capabilities: [chat, tools, vision]\n"
    "    launches: { azure: 2026-08-07, openai: 2026-08-07, aws: 2026-08-07, gcp: 2026-09-01 }\n"
    "  - name: p6\n"
    "    core: true\n"
    "    capabilities: [chat, tools, vision, audio]\n"
    "    launches: { azure: 2026-12-15, openai: 2026-12-10, aws: 2026-12-01, gcp: 2027-01-15 }\n"
    "  - name: rt\n"
    "    core: true\n"
    "    capabilities: [chat, audio]\n"
    "    launches: { openai: 2026-11-01, aws: 2026-10-20 }\n"
    "  - name: emb\n"
    "    capabilities: [embeddings]\n"
    "    launches: { azure: 2026-11-15, aws: 2026-11-01 }\n"
    "agreements:\n"
    "  - id: ms\n"
    "    versions:\n"
    "      - effective: 2026-10-28\n"
    "        primary_cloud: azure\n"
    "        first_launch:\n"
    "          products: core\n"
    "          holdback_days: 5\n"
    "          opt_outs:\n"
    "            - { product: rt, since: 2026-11-01 }\n"
    "            - { capability: vision, since: 2026-12-16 }\n"
    "            - { product: p6, capability: tools }\n"
    "            - { product: [emb, rt], capability: audio, since: 2031-06-01 }\n"
    "        licences: [{ licensee: azure, products: \"*\", until: 2032-12-31 }]\n"
    "        revenue_shares:\n"
    "          - { payee: microsoft, rate: 0.20, base: all, until: 2030-12-31,\n"
    "              cap: \"1000000.00\", currency: USD }\n"
    "      - effective: 2019-07-22\n"
    "        licences: [{ licensee: azure, products: \"*\", until: 2030-12-31, exclusive: true }]\n"
    "        revenue_shares: [{ payee: microsoft, rate: 0.2, base: all, until: 2030-12-31 }]\n"
    "  - id: amzn\n"
    "    versions:\n"
    "      - effective: 2026-03-01\n"
    "        licences: [{ licensee: aws, products: \"*\", until: 2031-02-28 }]\n"
    "        revenue_shares:\n"
    "          - { payee: amazon, rate: 0.05, base: { clouds: [aws] }, until: 2031-02-28 }\n"
    "          - { payee: amazon-p5, rate: \"0.000001\", base: { clouds: [aws], products: [p5] },\n"
    "              from: 2027-01-01, until: 2027-01-31 }\n"
    "  - id: goog\n"
    "    versions:\n"
    "      - effective: 2026-06-01\n"
    "        licences: [{ licensee: gcp, products: [p5, p6], from: 2026-11-01, until: "
    "2027-12-31 }]\n"
    "      - effective: 2028-01-01\n"
    "        licences: [{ licensee: gcp, products: [p5], until: 2028-06-30, exclusive: true }]\n";

static struct cmx_config *cfg;

static int setup(void **state)
{
    struct cmx_config_diag d;
    (void)state;
    cmx_config_diag_init(&d);
    int rc = cmx_config_load_string(fixture, strlen(fixture), "t.yaml", &cfg, &d);
    if (rc != 0)
        fprintf(stderr, "%s", d.text.data ? d.text.data : "");
    cmx_config_diag_free(&d);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cmx_config_unref(cfg);
    cfg = NULL;
    return 0;
}

static size_t P(const char *name)
{
    int64_t p = cmx_agreements_product(cfg->agreements, name);
    if (p < 0)
        fail_msg("no product %s", name);
    return (size_t)p;
}

static size_t C(const char *name)
{
    int64_t c = cmx_agreements_cloud(cfg->agreements, name);
    if (c < 0)
        fail_msg("no cloud %s", name);
    return (size_t)c;
}

/* ---- boundaries ---------------------------------------------------------------------- */

struct boundary {
    const char *product, *cloud;
    unsigned caps;
    const char *at;
    enum cmx_agr_reason want;
    const char *by; /* deciding agreement label, NULL for none */
};

#define ALLOWED   CMX_AGR_ALLOWED
#define EXCL      CMX_AGR_EXCLUSIVE_TO_OTHER
#define NOLIC     CMX_AGR_NO_LICENCE
#define EXPIRED   CMX_AGR_LICENCE_EXPIRED
#define NOTLAUNCH CMX_AGR_NOT_LAUNCHED
#define AWAIT     CMX_AGR_AWAITING_PRIMARY_LAUNCH
#define HOLD      CMX_AGR_HOLDBACK
#define CHAT      CMX_CAP_CHAT
#define MS1       "ms@2019-07-22"
#define MS2       "ms@2026-10-28"
#define AMZN      "amzn@2026-03-01"
#define GOOG1     "goog@2026-06-01"
#define GOOG2     "goog@2028-01-01"

static const struct boundary boundaries[] = {
    /* before any agreement: nobody holds a licence; the maker needs none */
    {"p5", "azure", CHAT, "2019-07-21T23:59:59.999Z", NOLIC, NULL},
    {"p5", "azure", CHAT, "2019-07-22", NOTLAUNCH, NULL},
    {"p5", "openai", CHAT, "2019-07-21", NOTLAUNCH, NULL},
    /* launch on azure (exclusive licensee): day before / of / after */
    {"p5", "azure", CHAT, "2026-08-06", NOTLAUNCH, NULL},
    {"p5", "azure", CHAT, "2026-08-06T23:59:59.999Z", NOTLAUNCH, NULL},
    {"p5", "azure", CHAT, "2026-08-07", ALLOWED, MS1},
    {"p5", "azure", CHAT, "2026-08-08", ALLOWED, MS1},
    /* the maker's own cloud: launched is enough, even under another's exclusivity */
    {"p5", "openai", CHAT, "2026-08-06T23:59:59.999Z", NOTLAUNCH, NULL},
    {"p5", "openai", CHAT, "2026-08-07", ALLOWED, NULL},
    {"p5", "openai", CHAT | CMX_CAP_VISION | CMX_CAP_TOOLS, "2026-09-01", ALLOWED, NULL},
    /* exclusivity: aws is licensed and launched but shut out until the amendment */
    {"p5", "aws", CHAT, "2026-08-07", EXCL, MS1},
    {"p5", "aws", CHAT, "2026-10-27T23:59:59.999Z", EXCL, MS1},
    {"p5", "aws", CHAT, "2026-10-28", ALLOWED, AMZN},
    {"p5", "gcp", CHAT, "2026-08-31", EXCL, MS1},   /* several reasons: exclusivity first */
    {"p5", "gcp", CHAT, "2026-10-28", NOLIC, NULL}, /* the licence's own from date */
    {"p5", "gcp", CHAT, "2026-10-31T23:59:59.999Z", NOLIC, NULL},
    {"p5", "gcp", CHAT, "2026-11-01", ALLOWED, GOOG1},
    /* amendment effective date: the whole version is replaced */
    {"p5", "azure", CHAT, "2026-10-27T23:59:59.999Z", ALLOWED, MS1},
    {"p5", "azure", CHAT, "2026-10-28", ALLOWED, MS2},
    /* licence end is inclusive */
    {"p5", "aws", CHAT, "2031-02-28T23:59:59.999Z", ALLOWED, AMZN},
    {"p5", "aws", CHAT, "2031-03-01", EXPIRED, AMZN},
    {"p5", "azure", CHAT, "2032-12-31T23:59:59.999Z", ALLOWED, MS2},
    {"p5", "azure", CHAT, "2033-01-01", EXPIRED, MS2},
    {"p5", "openai", CHAT, "2040-01-01", ALLOWED, NULL},
    /* exclusivity starting and ending (goog's second version) */
    {"p5", "aws", CHAT, "2027-12-31T23:59:59.999Z", ALLOWED, AMZN},
    {"p5", "aws", CHAT, "2028-01-01", EXCL, GOOG2},
    {"p5", "azure", CHAT, "2028-01-01", EXCL, GOOG2},
    {"p5", "openai", CHAT, "2028-01-01", ALLOWED, NULL},
    {"p5", "gcp", CHAT, "2028-01-01", ALLOWED, GOOG2},
    {"p5", "aws", CHAT, "2028-06-30T23:59:59.999Z", EXCL, GOOG2},
    {"p5", "aws", CHAT, "2028-07-01", ALLOWED, AMZN},
    {"p5", "gcp", CHAT, "2028-07-01", EXPIRED, GOOG2},
    {"p6", "gcp", CHAT, "2028-01-01", NOLIC, NULL}, /* v2 does not cover p6: replaced */
    /* p6: aws launches before the primary; awaiting, then the 5-day holdback */
    {"p6", "aws", CHAT, "2026-11-30", NOTLAUNCH, NULL},
    {"p6", "aws", CHAT, "2026-12-01", AWAIT, MS2},
    {"p6", "aws", CHAT, "2026-12-14T23:59:59.999Z", AWAIT, MS2},
    {"p6", "azure", CHAT, "2026-12-14", NOTLAUNCH, NULL},
    {"p6", "azure", CHAT, "2026-12-15", ALLOWED, MS2},
    {"p6", "aws", CHAT, "2026-12-15", HOLD, MS2},
    {"p6", "aws", CHAT, "2026-12-19T23:59:59.999Z", HOLD, MS2},
    {"p6", "aws", CHAT, "2026-12-20", ALLOWED, AMZN},
    {"p6", "openai", CHAT, "2026-12-09", NOTLAUNCH, NULL},
    {"p6", "openai", CHAT, "2026-12-10", ALLOWED, NULL}, /* the maker is not bound */
    /* several reasons: not launched before awaiting the primary */
    {"p6", "gcp", CHAT, "2026-12-01", NOTLAUNCH, NULL},
    {"p6", "gcp", CHAT, "2027-01-14T23:59:59.999Z", NOTLAUNCH, NULL},
    {"p6", "gcp", CHAT, "2027-01-15", ALLOWED, GOOG1},
    /* capability opt-outs: tools of p6 (product + capability) at once; vision from 12-16 */
    {"p6", "aws", CMX_CAP_TOOLS, "2026-12-01", ALLOWED, AMZN},
    {"p6", "aws", CHAT | CMX_CAP_TOOLS, "2026-12-01", AWAIT, MS2},
    {"p6", "aws", CMX_CAP_AUDIO, "2026-12-01", AWAIT, MS2},
    {"p6", "aws", CMX_CAP_VISION, "2026-12-15T23:59:59.999Z", HOLD, MS2},
    {"p6", "aws", CMX_CAP_VISION, "2026-12-16", ALLOWED, AMZN},
    {"p6", "aws", CHAT | CMX_CAP_VISION, "2026-12-16", HOLD, MS2},
    {"p5", "aws", CMX_CAP_TOOLS, "2026-10-28", ALLOWED, AMZN},
    /* rt: opted out by product from 11-01; azure never launches it */
    {"rt", "aws", CHAT, "2026-10-27", EXCL, MS1},
    {"rt", "aws", CHAT, "2026-10-28", AWAIT, MS2},
    {"rt", "aws", CHAT | CMX_CAP_AUDIO, "2026-10-31T23:59:59.999Z", AWAIT, MS2},
    {"rt", "aws", CHAT | CMX_CAP_AUDIO, "2026-11-01", ALLOWED, AMZN},
    {"rt", "azure", CHAT, "2026-11-05", NOTLAUNCH, NULL},
    {"rt", "gcp", CHAT, "2026-11-05", NOLIC, NULL}, /* several reasons: no licence first */
    /* emb is not core: no first launch */
    {"emb", "aws", CMX_CAP_EMBEDDINGS, "2026-10-31", NOTLAUNCH, NULL},
    {"emb", "aws", CMX_CAP_EMBEDDINGS, "2026-11-01", ALLOWED, AMZN},
    {"emb", "azure", CMX_CAP_EMBEDDINGS, "2026-11-14", NOTLAUNCH, NULL},
    {"emb", "azure", CMX_CAP_EMBEDDINGS, "2026-11-15", ALLOWED, MS2},
};

static void test_boundaries(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(boundaries) / sizeof(boundaries[0]); i++) {
        const struct boundary *b = &boundaries[i];
        const struct cmx_agreements *a = cfg->agreements;
        size_t p = P(b->product), c = C(b->cloud);
        int64_t at = T(b->at);
        struct cmx_agr_decision d, e;

        assert_int_equal(cmx_agreements_decide(a, p, c, b->caps, at, &d), 0);
        const char *by = d.by ? d.by->label : NULL;
        if (d.reason != b->want || (by == NULL) != (b->by == NULL) ||
            (by != NULL && strcmp(by, b->by) != 0))
            fail_msg("case %zu (%s on %s at %s): got %s by %s, want %s by %s", i, b->product,
                     b->cloud, b->at, cmx_agr_reason_name(d.reason), by ? by : "-",
                     cmx_agr_reason_name(b->want), b->by ? b->by : "-");
        assert_int_equal(cmx_agreements_reason(a, p, c, b->caps, at), b->want);

        /* The direct evaluation agrees, capability by capability. */
        enum cmx_agr_reason best = CMX_AGR_ALLOWED;
        for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
            if (!(b->caps & (1u << k)))
                continue;
            cmx_agreements_evaluate(a, p, c, 1u << k, at, &e);
            if (e.reason != CMX_AGR_ALLOWED && (best == CMX_AGR_ALLOWED || e.reason < best))
                best = e.reason;
        }
        if (best != b->want)
            fail_msg("case %zu: direct evaluation gives %s", i, cmx_agr_reason_name(best));
    }
}

static void test_next_change_and_messages(void **state)
{
    const struct cmx_agreements *a = cfg->agreements;
    struct cmx_agr_decision d;
    char msg[512];
    (void)state;

    cmx_agreements_decide(a, P("p6"), C("aws"), CHAT, T("2026-12-01"), &d);
    assert_int_equal(d.reason, AWAIT);
    assert_int_equal(d.next_change, T("2026-12-15"));
    assert_int_equal(d.when, T("2026-12-15"));
    cmx_agreements_message(a, P("p6"), C("aws"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "p6 has not launched on the primary cloud azure");
    assert_int_equal(cmx_agreements_allowed_from(a, P("p6"), C("aws"), CHAT, T("2026-12-01")),
                     T("2026-12-20"));

    cmx_agreements_decide(a, P("p6"), C("aws"), CHAT, T("2026-12-15"), &d);
    cmx_agreements_message(a, P("p6"), C("aws"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "p6 is held back on aws until 2026-12-20 (5 days after its launch "
                             "on the primary cloud azure)");
    assert_int_equal(d.next_change, T("2026-12-20"));

    cmx_agreements_decide(a, P("p6"), C("azure"), CHAT, T("2026-12-01"), &d);
    cmx_agreements_message(a, P("p6"), C("azure"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "p6 has not launched on the primary cloud azure");

    cmx_agreements_decide(a, P("p5"), C("aws"), CHAT, T("2026-09-01"), &d);
    cmx_agreements_message(a, P("p5"), C("aws"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "p5 is licensed exclusively to azure through 2030-12-31");
    assert_int_equal(d.next_change, T("2026-10-28"));

    cmx_agreements_decide(a, P("p5"), C("aws"), CHAT, T("2031-06-01"), &d);
    cmx_agreements_message(a, P("p5"), C("aws"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "aws's licence for p5 ended on 2031-02-28");
    assert_int_equal(d.next_change, CMX_AGR_NEVER);
    assert_int_equal(cmx_agreements_allowed_from(a, P("p5"), C("aws"), CHAT, T("2031-06-01")),
                     CMX_AGR_NEVER);

    cmx_agreements_decide(a, P("p6"), C("gcp"), CHAT, T("2026-10-30"), &d);
    cmx_agreements_message(a, P("p6"), C("gcp"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "gcp's licence for p6 starts on 2026-11-01");

    cmx_agreements_decide(a, P("rt"), C("gcp"), CHAT, T("2026-11-05"), &d);
    cmx_agreements_message(a, P("rt"), C("gcp"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "gcp holds no licence for rt");

    cmx_agreements_decide(a, P("p6"), C("aws"), CMX_CAP_VISION, T("2026-12-15"), &d);
    cmx_agreements_message(a, P("p6"), C("aws"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "p6 (vision) is held back on aws until 2026-12-20 (5 days after "
                             "its launch on the primary cloud azure)");

    cmx_agreements_decide(a, P("p5"), C("openai"), CHAT, T("2026-09-01"), &d);
    cmx_agreements_message(a, P("p5"), C("openai"), &d, msg, sizeof(msg));
    assert_string_equal(msg, "openai may serve p5 as the maker's own cloud");

    /* out of range */
    assert_int_equal(cmx_agreements_decide(a, 99, 0, CHAT, 0, &d), CMX_EINVAL);
    assert_int_equal(cmx_agreements_decide(a, 0, 99, CHAT, 0, &d), CMX_EINVAL);
    assert_int_equal(cmx_agreements_decide(a, 0, 0, 0, 0, &d), CMX_EINVAL);
}

static void test_resolution(void **state)
{
    const struct cmx_agreements *a = cfg->agreements;
    (void)state;

    assert_string_equal(a->maker, "openai");
    assert_int_equal(a->n_clouds, 4);
    assert_string_equal(a->clouds[0], "aws");
    assert_string_equal(a->clouds[3], "openai");
    assert_int_equal(a->n_products, 4);
    assert_true(a->products[P("p5")].core);
    assert_false(a->products[P("emb")].core);
    assert_int_equal(a->products[P("emb")].caps, CMX_CAP_EMBEDDINGS);
    assert_int_equal(a->products[P("rt")].launches[C("azure")], CMX_AGR_NEVER);
    /* versions are sorted by effective date whatever the file order */
    const struct cmx_agr_agreement *ms = &a->agreements[0];
    assert_string_equal(ms->id, "ms");
    assert_int_equal(ms->n_versions, 2);
    assert_string_equal(ms->versions[0].label, MS1);
    assert_string_equal(ms->versions[1].label, MS2);
    assert_int_equal(ms->versions[0].end, T("2026-10-28"));
    assert_int_equal(ms->versions[1].end, CMX_AGR_NEVER);
    assert_int_equal(ms->versions[1].licences[0].from, T("2026-10-28"));
    assert_int_equal(ms->versions[1].licences[0].until, T("2033-01-01") - 1);
    assert_int_equal(ms->versions[1].opt_outs[2].since, T("2026-10-28"));
    /* an opt-out naming a list of products is one opt-out per product */
    assert_int_equal(ms->versions[1].n_opt_outs, 5);
    assert_int_equal(ms->versions[1].opt_outs[3].product, (int)P("emb"));
    assert_int_equal(ms->versions[1].opt_outs[4].product, (int)P("rt"));
    assert_int_equal(ms->versions[1].opt_outs[4].caps, CMX_CAP_AUDIO);
    assert_int_equal(ms->versions[1].opt_outs[4].since, T("2031-06-01"));
    assert_int_equal(ms->versions[1].shares[0].rate_ppm, 200000);
    assert_true(ms->versions[1].shares[0].has_cap);
    assert_int_equal(ms->versions[1].shares[0].cap_micros, INT64_C(1000000000000));
    assert_string_equal(ms->versions[0].shares[0].currency, "USD");

    /* models map to products: by name, explicitly, or not at all */
    assert_string_equal(cfg->models[0].product, "p5");
    assert_string_equal(cfg->models[1].product, "p6");
    assert_int_equal(cmx_agreements_model_product(cfg, &cfg->models[1]), (int64_t)P("p6"));
    assert_null(cfg->models[4].product);
    assert_int_equal(cmx_agreements_model_product(cfg, &cfg->models[4]), -1);
}

/* ---- the request path ---------------------------------------------------------------- */

static unsigned caps_of(int endpoint, const char *body)
{
    struct cmx_json_member m[32];
    size_t n = 0;
    enum cmx_json_type top;
    assert_int_equal(cmx_json_scan(body, strlen(body), &top, m, 32, &n), 0);
    return cmx_caps_from_request(endpoint, body, strlen(body), m, n);
}

static void test_caps_from_request(void **state)
{
    (void)state;
    assert_int_equal(caps_of(0, "{\"model\":\"m\",\"messages\":[]}"), CMX_CAP_CHAT);
    assert_int_equal(caps_of(1, "{\"model\":\"m\",\"input\":\"x\",\"tools\":[1]}"),
                     CMX_CAP_EMBEDDINGS);
    assert_int_equal(caps_of(0, "{\"tools\":[ ]}"), CMX_CAP_CHAT);
    assert_int_equal(caps_of(0, "{\"tools\":[{\"type\":\"function\"}]}"),
                     CMX_CAP_CHAT | CMX_CAP_TOOLS);
    assert_int_equal(caps_of(0, "{\"functions\":[{\"name\":\"f\"}]}"),
                     CMX_CAP_CHAT | CMX_CAP_TOOLS);
    assert_int_equal(caps_of(0, "{\"tools\":null}"), CMX_CAP_CHAT);
    assert_int_equal(
        caps_of(0, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                   "\"text\":\"image_url\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
                   "\"data:,\"}}]}]}"),
        CMX_CAP_CHAT | CMX_CAP_VISION);
    /* the word in text only: no vision */
    assert_int_equal(caps_of(0, "{\"messages\":[{\"role\":\"user\",\"content\":\"image_url "
                                "input_audio\"}]}"),
                     CMX_CAP_CHAT);
    assert_int_equal(
        caps_of(0, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                   "\"input_audio\":{\"data\":\"\",\"format\":\"wav\"}}]}]}"),
        CMX_CAP_CHAT | CMX_CAP_AUDIO);
    assert_int_equal(caps_of(0, "{\"modalities\":[\"text\",\"audio\"]}"),
                     CMX_CAP_CHAT | CMX_CAP_AUDIO);
    assert_int_equal(caps_of(0, "{\"modalities\":[\"text\",\"\\\"audio\"]}"), CMX_CAP_CHAT);
    assert_int_equal(caps_of(0, "{\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}}"),
                     CMX_CAP_CHAT | CMX_CAP_AUDIO);
    assert_int_equal(caps_of(0, "{\"audio\":null}"), CMX_CAP_CHAT);
    /* spelt with \\u escapes (json-c decodes them): still vision / audio */
    assert_int_equal(caps_of(0, "{\"messages\":[{\"content\":[{\"type\":\"image\\u005furl\"}]}]}"),
                     CMX_CAP_CHAT | CMX_CAP_VISION);
    assert_int_equal(
        caps_of(0, "{\"messages\":[{\"content\":[{\"type\":\"\\u0069nput_audio\"}]}]}"),
        CMX_CAP_CHAT | CMX_CAP_AUDIO);
    assert_int_equal(caps_of(0, "{\"modalities\":[\"\\u0061udio\"]}"),
                     CMX_CAP_CHAT | CMX_CAP_AUDIO);
    /* an escaped backslash before u is no escape; underscores in text are no media */
    assert_int_equal(caps_of(0, "{\"messages\":[{\"content\":\"a\\\\u0069 _ image-url\\\\\"}]}"),
                     CMX_CAP_CHAT);
    assert_int_equal(caps_of(0, "{\"messages\":[{\"content\":\"_image_url_\"}]}"), CMX_CAP_CHAT);
    assert_int_equal(caps_of(0, "{\"tools\":[{}],\"messages\":[{\"content\":[{\"type\":"
                                "\"image_url\"},{\"type\":\"input_audio\"}]}]}"),
                     CMX_CAP_CHAT | CMX_CAP_TOOLS | CMX_CAP_VISION | CMX_CAP_AUDIO);
}

static const struct cmx_deployment_cfg *dep(const char *model, const char *provider)
{
    const struct cmx_model_cfg *m = cmx_config_find_model(cfg, model, strlen(model));
    assert_non_null(m);
    for (size_t i = 0; i < m->n_deployments; i++) {
        if (strcmp(m->deployments[i].provider->name, provider) == 0)
            return &m->deployments[i];
    }
    fail_msg("no deployment %s/%s", model, provider);
    return NULL;
}

static void test_filter(void **state)
{
    struct cmx_arena arena;
    const char *why = NULL;
    char text[512];
    (void)state;

    cmx_arena_init(&arena);
    struct cmx_agreement_check chk = {
        .cfg = cfg,
        .model = cmx_config_find_model(cfg, "gpt-6", 5),
        .caps = CMX_CAP_CHAT,
        .now_ms = (uint64_t)T("2026-12-01"),
        .arena = &arena,
    };
    assert_false(cmx_agreements_filter(&chk, dep("gpt-6", "aws"), &why));
    assert_string_equal(why, "awaiting_primary_launch");
    cmx_agreements_why(&chk, dep("gpt-6", "aws"), text, sizeof(text));
    assert_string_equal(text, "awaiting_primary_launch: p6 has not launched on the primary "
                              "cloud azure");
    assert_false(cmx_agreements_filter(&chk, dep("gpt-6", "az"), &why));
    assert_string_equal(why, "not_launched");
    cmx_agreements_why(&chk, dep("gpt-6", "az"), text, sizeof(text));
    assert_string_equal(text, "not_launched: p6 has not launched on the primary cloud azure");
    assert_false(cmx_agreements_filter(&chk, dep("gpt-6", "oa"), &why));
    assert_string_equal(why, "not_launched");
    cmx_agreements_why(&chk, dep("gpt-6", "oa"), text, sizeof(text));
    assert_string_equal(text, "not_launched: p6 has not launched on openai");

    /* The 403 message: each reason once, then when each cloud may serve. */
    struct cmx_route_excluded ex[] = {
        {dep("gpt-6", "az"), "x"}, {dep("gpt-6", "aws"), "x"}, {dep("gpt-6", "oa"), "x"}};
    struct cmx_buf b;
    cmx_buf_init(&b, 4096);
    assert_int_equal(cmx_agreements_denial(&chk, ex, 3, &b), 0);
    assert_string_equal(b.data, "p6 has not launched on the primary cloud azure; p6 has not "
                                "launched on openai; openai may serve it from 2026-12-10; azure "
                                "may serve it from 2026-12-15; aws may serve it from 2026-12-20");
    cmx_buf_reset(&b);

    /* The example: only azure and aws. */
    assert_int_equal(cmx_agreements_denial(&chk, ex, 2, &b), 0);
    assert_string_equal(b.data, "p6 has not launched on the primary cloud azure; azure may "
                                "serve it from 2026-12-15; aws may serve it from 2026-12-20");
    cmx_buf_reset(&b);

    /* Deployments excluded by other filters are not ours. */
    chk.now_ms = (uint64_t)T("2027-02-01");
    assert_int_equal(cmx_agreements_denial(&chk, ex, 3, &b), CMX_ENOTFOUND);
    assert_int_equal(b.len, 0);
    assert_true(cmx_agreements_filter(&chk, dep("gpt-6", "aws"), &why));

    /* Same date for two clouds: "azure and aws". */
    chk.model = cmx_config_find_model(cfg, "p5", 2);
    chk.now_ms = (uint64_t)T("2026-08-01");
    struct cmx_route_excluded ex5[] = {{dep("p5", "az"), "x"}, {dep("p5", "oa"), "x"}};
    assert_int_equal(cmx_agreements_denial(&chk, ex5, 2, &b), 0);
    assert_string_equal(b.data, "p5 has not launched on azure; p5 has not launched on openai; "
                                "azure and openai may serve it from 2026-08-07");
    cmx_buf_reset(&b);

    /* Capabilities: a vision request to p6 on aws after the vision opt-out but within the
     * holdback is still denied because chat is; tools alone would be allowed. */
    chk.model = cmx_config_find_model(cfg, "gpt-6", 5);
    chk.now_ms = (uint64_t)T("2026-12-16");
    chk.caps = CMX_CAP_CHAT | CMX_CAP_VISION;
    assert_false(cmx_agreements_filter(&chk, dep("gpt-6", "aws"), &why));
    assert_string_equal(why, "holdback");
    cmx_agreements_why(&chk, dep("gpt-6", "aws"), text, sizeof(text));
    assert_string_equal(text, "holdback: p6 is held back on aws until 2026-12-20 (5 days after "
                              "its launch on the primary cloud azure)");
    chk.caps = CMX_CAP_TOOLS;
    assert_true(cmx_agreements_filter(&chk, dep("gpt-6", "aws"), &why));

    /* An ungoverned model is never filtered, whatever the cloud. */
    chk.model = cmx_config_find_model(cfg, "llama", 5);
    chk.caps = CMX_CAP_CHAT;
    chk.now_ms = 0;
    assert_true(cmx_agreements_filter(&chk, dep("llama", "aws"), &why));
    assert_true(cmx_agreements_filter(&chk, dep("llama", "gcp"), &why));
    assert_null(cmx_agreements_applied(&chk, dep("llama", "aws")));
    assert_int_equal(cmx_agreements_denial(&chk, ex, 0, &b), CMX_ENOTFOUND);

    /* No arena: the bare reason code. */
    chk.model = cmx_config_find_model(cfg, "gpt-6", 5);
    chk.now_ms = (uint64_t)T("2026-12-01");
    chk.arena = NULL;
    assert_false(cmx_agreements_filter(&chk, dep("gpt-6", "aws"), &why));
    assert_string_equal(why, "awaiting_primary_launch");

    cmx_buf_free(&b);
    cmx_arena_reset(&arena);
}

static void test_applied(void **state)
{
    (void)state;
    struct cmx_agreement_check chk = {.cfg = cfg, .model = cmx_config_find_model(cfg, "p5", 2)};

    chk.now_ms = (uint64_t)T("2026-09-01");
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "az")), MS1);
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "oa")), MS1); /* base: all */
    chk.now_ms = (uint64_t)T("2026-11-01");
    /* aws: first launch and revenue share of ms, licence and share of amzn */
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "aws")), MS2 ", " AMZN);
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "az")), MS2);
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "gcp")), MS2 ", " GOOG1);
    assert_string_equal(cmx_agreements_applied(&chk, dep("p5", "oa")), MS2);
    chk.now_ms = (uint64_t)T("2033-06-01");
    assert_null(cmx_agreements_applied(&chk, dep("p5", "oa")));
}

static void test_revenue_shares(void **state)
{
    const struct cmx_agreements *a = cfg->agreements;
    struct cmx_agr_share_view v[8];
    (void)state;

    assert_int_equal(cmx_agreements_revenue_shares(a, T("2019-07-21"), "aws", "p5", v, 8), 0);
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2026-01-01"), "openai", "p5", v, 8), 1);
    assert_string_equal(v[0].agreement, MS1);
    assert_string_equal(v[0].term->payee, "microsoft");
    assert_int_equal(v[0].term->rate_ppm, 200000);
    assert_false(v[0].term->has_cap);

    assert_int_equal(cmx_agreements_revenue_shares(a, T("2026-11-01"), "aws", "p5", v, 8), 2);
    assert_string_equal(v[0].agreement, MS2);
    assert_true(v[0].term->has_cap);
    assert_string_equal(v[1].agreement, AMZN);
    assert_string_equal(v[1].term->payee, "amazon");
    assert_int_equal(v[1].term->rate_ppm, 50000);
    assert_int_equal(v[1].index, 0);

    /* base by cloud and product, with from/until */
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-01-01"), "aws", "p5", v, 8), 3);
    assert_string_equal(v[2].term->payee, "amazon-p5");
    assert_int_equal(v[2].term->rate_ppm, 1);
    assert_int_equal(v[2].index, 1);
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-01-01"), "aws", "p6", v, 8), 2);
    assert_int_equal(
        cmx_agreements_revenue_shares(a, T("2027-01-31T23:59:59.999Z"), "aws", "p5", v, 8), 3);
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-02-01"), "aws", "p5", v, 8), 2);
    /* ungoverned revenue: only bases that do not name products */
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-01-01"), "aws", NULL, v, 8), 2);
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-01-01"), "gcp", "p5", v, 8), 1);
    /* more than max: the count, only max stored */
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2027-01-01"), "aws", "p5", v, 1), 3);
    /* the microsoft share ends with 2030 */
    assert_int_equal(cmx_agreements_revenue_shares(a, T("2031-01-01"), "azure", "p5", v, 8), 0);
}

static void test_no_agreements(void **state)
{
    static const char yaml[] =
        "providers:\n"
        "  - { name: p, type: openai_compatible, cloud: onprem, base_url: http://127.0.0.1:1 }\n"
        "models:\n"
        "  - { name: m, deployments: [{ provider: p, model: x }] }\n";
    struct cmx_config *c = NULL;
    struct cmx_buf b;
    const char *why = NULL;
    (void)state;

    assert_int_equal(cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &c, NULL), 0);
    assert_null(c->agreements);
    assert_null(c->models[0].product);
    struct cmx_agreement_check chk = {.cfg = c, .model = &c->models[0], .caps = CMX_CAP_CHAT};
    assert_true(cmx_agreements_filter(&chk, &c->models[0].deployments[0], &why));
    assert_null(cmx_agreements_applied(&chk, &c->models[0].deployments[0]));
    cmx_buf_init(&b, 1 << 16);
    assert_int_equal(cmx_agreements_matrix_json(c, 0, &b), 0);
    assert_string_equal(b.data, "{\"at\":\"1970-01-01T00:00:00Z\",\"maker\":null,\"clouds\":[],"
                                "\"products\":[],\"cells\":[]}\n");
    cmx_buf_free(&b);
    cmx_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_parse),    cmocka_unit_test(test_clock_freeze),
        cmocka_unit_test(test_boundaries),     cmocka_unit_test(test_next_change_and_messages),
        cmocka_unit_test(test_resolution),     cmocka_unit_test(test_caps_from_request),
        cmocka_unit_test(test_filter),         cmocka_unit_test(test_applied),
        cmocka_unit_test(test_revenue_shares), cmocka_unit_test(test_no_agreements),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
