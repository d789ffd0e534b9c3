/* libFuzzer target for the agreements sections of the config (src/config/config_agreements.c)
 * and the engine (src/agreements/): loads arbitrary YAML and, when it loads with agreements,
 * checks what must hold for any terms:
 *   - the precomputed lookup routing uses agrees with the direct evaluation of the terms, at
 *     every date the terms mention and the millisecond before it;
 *   - next_change is later than the instant asked about, and the decision differs there;
 *   - the matrix and timeline reports are produced, and the matrix JSON parses.
 * Besides no crash, no leak, no UB. */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agreements/agreements_int.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void check_at(const struct cmx_agreements *a, int64_t t)
{
    for (size_t p = 0; p < a->n_products; p++) {
        for (size_t c = 0; c < a->n_clouds; c++) {
            for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
                struct cmx_agr_decision d, e;
                check(cmx_agreements_decide(a, p, c, 1u << k, t, &d) == 0);
                cmx_agreements_evaluate(a, p, c, 1u << k, t, &e);
                check(d.reason == e.reason && d.by == e.by && d.when == e.when);
                check(d.next_change == CMX_AGR_NEVER || d.next_change > t);
                if (d.next_change != CMX_AGR_NEVER) {
                    cmx_agreements_evaluate(a, p, c, 1u << k, d.next_change, &e);
                    check(e.reason != d.reason || e.by != d.by);
                }
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmx_config *cfg = NULL;

    if (cmx_config_load_string((const char *)data, size, "fuzz.yaml", &cfg, NULL) != 0)
        return 0;
    const struct cmx_agreements *a = cfg->agreements;
    /* Bound the work per input: the checks are quadratic in the terms. */
    if (a != NULL && a->n_products * a->n_clouds <= 64) {
        for (size_t p = 0; p < a->n_products; p++) {
            int64_t *bp;
            check(cmx_agreements_product(a, a->products[p].name) == (int64_t)p);
            size_t n = cmx_agr_breakpoints(a, p, &bp);
            check(n != (size_t)-1);
            for (size_t i = 0; i < n && i < 64; i++) {
                check(i == 0 || bp[i] > bp[i - 1]);
                check_at(a, bp[i]);
                check_at(a, bp[i] - 1);
            }
            free(bp);
        }
        struct cmx_buf b;
        cmx_buf_init(&b, 1u << 24);
        check(cmx_agreements_matrix_json(cfg, UINT64_C(1796083200000), &b) == 0);
        struct json_object *o = json_tokener_parse(b.data);
        check(o != NULL);
        json_object_put(o);
        cmx_buf_reset(&b);
        int rc = cmx_agreements_timeline(cfg, NULL, CMX_AGR_FORMAT_TABLE, &b);
        check(rc == 0 || rc == CMX_ETOOBIG);
        cmx_buf_free(&b);
    }
    cmx_config_unref(cfg);
    return 0;
}
