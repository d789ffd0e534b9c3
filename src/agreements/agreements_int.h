/* Private to src/agreements/ and src/config/config_agreements.c: the precomputed decision
 * intervals and the helpers shared by the engine, the request path and the reports. */
#ifndef CMX_AGREEMENTS_AGREEMENTS_INT_H
#define CMX_AGREEMENTS_AGREEMENTS_INT_H

#include "agreements/agreements.h"

/* One stretch of time with one decision, from start until the next interval's start. */
struct cmx_agr_interval {
    int64_t start;                    /* first ms (the first interval: INT64_MIN) */
    int64_t when;                     /* cmx_agr_decision.when */
    const struct cmx_agr_version *by; /* cmx_agr_decision.by */
    int32_t other;                    /* cmx_agr_decision.other */
    uint8_t reason;                   /* enum cmx_agr_reason */
    bool on_primary;                  /* cmx_agr_decision.on_primary */
};

/* The decision of one (product, cloud, capability) over all time. */
struct cmx_agr_series {
    struct cmx_agr_interval *iv; /* n >= 1 intervals, ascending start, iv[0].start INT64_MIN */
    size_t n;
};

/* The x-cloudmux-agreement value of one (product, cloud) from start on. */
struct cmx_agr_applied {
    int64_t start;     /* first ms (the first: INT64_MIN) */
    const char *value; /* "id@eff, id@eff" or NULL */
};

struct cmx_agr_aseries {
    struct cmx_agr_applied *iv; /* n >= 1, ascending start */
    size_t n;
};

/* Most evaluation steps (points x terms) precomputation may take: about a second. */
#define CMX_AGR_MAX_WORK (UINT64_C(300) * 1000 * 1000)

/* Builds a->series and a->applied from the resolved terms (allocating from arena).
 * Returns 0, CMX_ENOMEM, or CMX_ETOOBIG when the terms exceed CMX_AGR_MAX_WORK. Called once
 * by the config loader when the terms are valid. */
int cmx_agreements_precompute(struct cmx_agreements *a, struct cmx_arena *arena);

/* Does scope s cover product p? */
bool cmx_agr_scope_covers(const struct cmx_agreements *a, const struct cmx_agr_scope *s, size_t p);

/* The version of ag in force at t, NULL before the first. */
const struct cmx_agr_version *cmx_agr_in_force(const struct cmx_agr_agreement *ag, int64_t t);

/* The version whose first-launch rule keeps cloud c from serving capability cap of
 * product p at t (awaiting the primary's launch first, then holdback), or NULL. */
const struct cmx_agr_version *cmx_agr_first_launch_denial(const struct cmx_agreements *a, size_t p,
                                                          size_t c, unsigned cap, int64_t t);

/* Every instant at which some decision or applied set of product p may change, sorted and
 * unique, into a malloc'd array (*out, caller frees); returns the count or (size_t)-1 when
 * out of memory. INT64_MIN is not included. */
size_t cmx_agr_breakpoints(const struct cmx_agreements *a, size_t p, int64_t **out);

/* The x-cloudmux-agreement value for (p, c) at t (NULL when none). */
const char *cmx_agr_applied_at(const struct cmx_agreements *a, size_t p, size_t c, int64_t t);

#endif
