/* The rules (agreements.h), evaluated directly from the terms, and their precomputation
 * into per-(product, cloud, capability) interval lists that routing searches. */
#include "agreements/agreements_int.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------- */

static const char *const reason_names[CMX_AGR_REASON_COUNT] = {
    "allowed",      "exclusive_to_other",      "no_licence", "licence_expired",
    "not_launched", "awaiting_primary_launch", "holdback",
};

static const char *const cap_names[CMX_CAP_COUNT] = {"chat", "embeddings", "tools", "vision",
                                                     "audio"};

const char *cmx_agr_reason_name(enum cmx_agr_reason r)
{
    return (unsigned)r < CMX_AGR_REASON_COUNT ? reason_names[r] : "unknown";
}

const char *cmx_cap_name(unsigned cap)
{
    for (unsigned i = 0; i < CMX_CAP_COUNT; i++) {
        if (cap == 1u << i)
            return cap_names[i];
    }
    return "?";
}

unsigned cmx_cap_parse(const char *name, size_t len)
{
    for (unsigned i = 0; i < CMX_CAP_COUNT; i++) {
        if (strlen(cap_names[i]) == len && memcmp(cap_names[i], name, len) == 0)
            return 1u << i;
    }
    return 0;
}

int64_t cmx_agreements_product(const struct cmx_agreements *a, const char *name)
{
    if (a == NULL || name == NULL)
        return -1;
    for (size_t i = 0; i < a->n_products; i++) {
        if (strcmp(a->products[i].name, name) == 0)
            return (int64_t)i;
    }
    return -1;
}

int64_t cmx_agreements_cloud(const struct cmx_agreements *a, const char *name)
{
    size_t lo = 0, hi;

    if (a == NULL || name == NULL)
        return -1;
    hi = a->n_clouds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, a->clouds[mid]);
        if (c == 0)
            return (int64_t)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

int64_t cmx_agreements_model_product(const struct cmx_config *cfg, const struct cmx_model_cfg *m)
{
    const struct cmx_agreements *a = cfg->agreements;
    if (a == NULL || a->model_product == NULL || m < cfg->models ||
        m >= cfg->models + cfg->n_models)
        return -1;
    return a->model_product[m - cfg->models];
}

/* ---- the rules --------------------------------------------------------------------- */

bool cmx_agr_scope_covers(const struct cmx_agreements *a, const struct cmx_agr_scope *s, size_t p)
{
    switch (s->kind) {
    case CMX_AGR_SCOPE_ALL:
        return true;
    case CMX_AGR_SCOPE_CORE:
        return a->products[p].core;
    case CMX_AGR_SCOPE_LIST:
        for (size_t i = 0; i < s->n_products; i++) {
            if (s->products[i] == p)
                return true;
        }
        return false;
    }
    return false;
}

const struct cmx_agr_version *cmx_agr_in_force(const struct cmx_agr_agreement *ag, int64_t t)
{
    const struct cmx_agr_version *v = NULL;
    for (size_t i = 0; i < ag->n_versions && ag->versions[i].effective <= t; i++)
        v = &ag->versions[i];
    return v;
}

static bool opted_out(const struct cmx_agr_version *v, size_t p, unsigned cap, int64_t t)
{
    for (size_t i = 0; i < v->n_opt_outs; i++) {
        const struct cmx_agr_optout *o = &v->opt_outs[i];
        if (o->product >= 0 && (size_t)o->product != p)
            continue;
        if (o->caps != 0 && !(o->caps & cap))
            continue;
        if (t >= o->since)
            return true;
    }
    return false;
}

/* Does a first-launch rule of v bind cloud c for product p? */
static bool first_launch_binds(const struct cmx_agreements *a, const struct cmx_agr_version *v,
                               size_t p, size_t c)
{
    return v->has_first_launch && v->primary >= 0 && (size_t)v->primary != c &&
           (int64_t)c != a->maker_cloud && cmx_agr_scope_covers(a, &v->first_launch, p);
}

static void set(struct cmx_agr_decision *out, enum cmx_agr_reason r,
                const struct cmx_agr_version *by, int64_t when, int64_t other)
{
    out->reason = r;
    out->by = by;
    out->when = when;
    out->other = other;
}

void cmx_agreements_evaluate(const struct cmx_agreements *a, size_t p, size_t c, unsigned cap,
                             int64_t t, struct cmx_agr_decision *out)
{
    const int64_t launch = a->products[p].launches[c];
    const struct cmx_agr_version *grant = NULL, *excl = NULL, *expired = NULL;
    int64_t excl_until = 0, excl_cloud = -1, expired_until = 0, future_from = CMX_AGR_NEVER;

    memset(out, 0, sizeof(*out));
    set(out, CMX_AGR_ALLOWED, NULL, CMX_AGR_NEVER, -1);
    out->cap = cap;
    out->next_change = CMX_AGR_NEVER;

    /* Whether this cloud is the primary of a first-launch rule in force (for messages). */
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], t);
        if (v != NULL && v->has_first_launch && v->primary == (int64_t)c &&
            cmx_agr_scope_covers(a, &v->first_launch, p))
            out->on_primary = true;
    }

    if ((int64_t)c == a->maker_cloud) {
        /* The maker's own API: no licence, no first launch, never shut out. */
        if (launch == CMX_AGR_NEVER || t < launch)
            set(out, CMX_AGR_NOT_LAUNCHED, NULL, launch, -1);
        return;
    }

    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], t);
        if (v == NULL)
            continue;
        for (size_t j = 0; j < v->n_licences; j++) {
            const struct cmx_agr_licence *l = &v->licences[j];
            if (!cmx_agr_scope_covers(a, &l->scope, p))
                continue;
            bool live = l->from <= t && t <= l->until;
            if (l->cloud == c) {
                if (live) {
                    if (grant == NULL)
                        grant = v;
                } else if (t > l->until) {
                    if (expired == NULL || l->until > expired_until) {
                        expired = v;
                        expired_until = l->until;
                    }
                } else if (l->from < future_from) {
                    future_from = l->from;
                }
            } else if (live && l->exclusive && excl == NULL) {
                excl = v;
                excl_until = l->until;
                excl_cloud = (int64_t)l->cloud;
            }
        }
    }
    if (excl != NULL) {
        set(out, CMX_AGR_EXCLUSIVE_TO_OTHER, excl, excl_until, excl_cloud);
        return;
    }
    if (grant == NULL) {
        if (expired != NULL)
            set(out, CMX_AGR_LICENCE_EXPIRED, expired, expired_until, -1);
        else
            set(out, CMX_AGR_NO_LICENCE, NULL, future_from, -1);
        return;
    }
    if (launch == CMX_AGR_NEVER || t < launch) {
        set(out, CMX_AGR_NOT_LAUNCHED, NULL, launch, -1);
        return;
    }

    /* First launch: awaiting the primary beats holdback; ties go to config order. */
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], t);
        if (v == NULL || !first_launch_binds(a, v, p, c) || opted_out(v, p, cap, t))
            continue;
        int64_t lp = a->products[p].launches[v->primary];
        if (lp == CMX_AGR_NEVER || t < lp) {
            set(out, CMX_AGR_AWAITING_PRIMARY_LAUNCH, v, lp, v->primary);
            return;
        }
        int64_t end = cmx_clock_day_start(lp) + (int64_t)v->holdback_days * CMX_CLOCK_DAY_MS;
        if (t < end && out->reason == CMX_AGR_ALLOWED)
            set(out, CMX_AGR_HOLDBACK, v, end, v->primary);
    }
    if (out->reason == CMX_AGR_ALLOWED)
        out->by = grant;
}

const struct cmx_agr_version *cmx_agr_first_launch_denial(const struct cmx_agreements *a, size_t p,
                                                          size_t c, unsigned cap, int64_t t)
{
    const struct cmx_agr_version *holdback = NULL;
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], t);
        if (v == NULL || !first_launch_binds(a, v, p, c) || opted_out(v, p, cap, t))
            continue;
        int64_t lp = a->products[p].launches[v->primary];
        if (lp == CMX_AGR_NEVER || t < lp)
            return v;
        int64_t end = cmx_clock_day_start(lp) + (int64_t)v->holdback_days * CMX_CLOCK_DAY_MS;
        if (t < end && holdback == NULL)
            holdback = v;
    }
    return holdback;
}

/* ---- precomputation ---------------------------------------------------------------- */

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

/* A growable int64 list (malloc'd). */
struct times {
    int64_t *v;
    size_t n, cap;
    bool nomem;
};

static void add(struct times *t, int64_t x)
{
    if (x == CMX_AGR_NEVER || x == INT64_MIN || t->nomem)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        int64_t *v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL) {
            t->nomem = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = x;
}

size_t cmx_agr_breakpoints(const struct cmx_agreements *a, size_t p, int64_t **out)
{
    const struct cmx_agr_product *pr = &a->products[p];
    struct times t = {0};

    *out = NULL;
    for (size_t c = 0; c < a->n_clouds; c++)
        add(&t, pr->launches[c]);
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_agreement *ag = &a->agreements[i];
        for (size_t k = 0; k < ag->n_versions; k++) {
            const struct cmx_agr_version *v = &ag->versions[k];
            add(&t, v->effective);
            if (v->has_first_launch && v->primary >= 0) {
                int64_t lp = pr->launches[v->primary];
                if (lp != CMX_AGR_NEVER)
                    add(&t, cmx_clock_day_start(lp) + (int64_t)v->holdback_days * CMX_CLOCK_DAY_MS);
            }
            for (size_t j = 0; j < v->n_opt_outs; j++)
                add(&t, v->opt_outs[j].since);
            for (size_t j = 0; j < v->n_licences; j++) {
                if (!cmx_agr_scope_covers(a, &v->licences[j].scope, p))
                    continue;
                add(&t, v->licences[j].from);
                add(&t, v->licences[j].until + 1);
            }
            for (size_t j = 0; j < v->n_shares; j++) {
                add(&t, v->shares[j].from);
                add(&t, v->shares[j].until + 1);
            }
        }
    }
    if (t.nomem) {
        free(t.v);
        return (size_t)-1;
    }
    if (t.n == 0) {
        free(t.v);
        return 0;
    }
    qsort(t.v, t.n, sizeof(t.v[0]), cmp_i64);
    size_t k = 1;
    for (size_t i = 1; i < t.n; i++) {
        if (t.v[i] != t.v[k - 1])
            t.v[k++] = t.v[i];
    }
    *out = t.v;
    return k;
}

static bool share_matches(const struct cmx_agr_revshare *s, int64_t c, int64_t p)
{
    bool ok = true;
    if (s->base_all)
        return true;
    if (s->n_clouds > 0) {
        ok = false;
        for (size_t i = 0; i < s->n_clouds && c >= 0; i++)
            ok = ok || s->clouds[i] == (size_t)c;
    }
    if (ok && s->n_products > 0) {
        ok = false;
        for (size_t i = 0; i < s->n_products && p >= 0; i++)
            ok = ok || s->products[i] == (size_t)p;
    }
    return ok;
}

/* Writes "id@eff, id@eff" of the agreements whose terms apply to (p, c) at t into b;
 * returns false when none. */
static bool applied_text(const struct cmx_agreements *a, size_t p, size_t c, int64_t t,
                         struct cmx_buf *b)
{
    bool maker = (int64_t)c == a->maker_cloud;

    cmx_buf_reset(b);
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], t);
        bool applies = false;
        if (v == NULL)
            continue;
        for (size_t j = 0; j < v->n_licences && !maker && !applies; j++) {
            const struct cmx_agr_licence *l = &v->licences[j];
            applies = l->cloud == c && l->from <= t && t <= l->until &&
                      cmx_agr_scope_covers(a, &l->scope, p);
        }
        if (!applies && first_launch_binds(a, v, p, c))
            applies = true;
        for (size_t j = 0; j < v->n_shares && !applies; j++) {
            const struct cmx_agr_revshare *s = &v->shares[j];
            applies = s->from <= t && t <= s->until && share_matches(s, (int64_t)c, (int64_t)p);
        }
        if (applies)
            cmx_buf_printf(b, "%s%s", b->len ? ", " : "", v->label);
    }
    return b->len > 0;
}

static bool same_interval(const struct cmx_agr_interval *x, const struct cmx_agr_decision *d)
{
    return x->reason == (uint8_t)d->reason && x->by == d->by && x->when == d->when &&
           x->other == (int32_t)d->other && x->on_primary == d->on_primary;
}

int cmx_agreements_precompute(struct cmx_agreements *a, struct cmx_arena *arena)
{
    size_t cells = a->n_products * a->n_clouds;
    struct cmx_agr_interval *tmp = NULL;
    struct cmx_agr_applied *atmp = NULL;
    struct cmx_buf text;
    int rc = CMX_ENOMEM;

    /* Bound the work (and memory): evaluation points times the terms each one reads. */
    size_t terms = 1, points = 0;
    for (size_t i = 0; i < a->n_agreements; i++) {
        for (size_t k = 0; k < a->agreements[i].n_versions; k++) {
            const struct cmx_agr_version *v = &a->agreements[i].versions[k];
            terms += 1 + v->n_licences + v->n_opt_outs + v->n_shares;
        }
    }
    for (size_t p = 0; p < a->n_products; p++) {
        int64_t *bp;
        size_t nbp = cmx_agr_breakpoints(a, p, &bp);
        if (nbp == (size_t)-1)
            return CMX_ENOMEM;
        free(bp);
        points += (nbp + 1) * a->n_clouds * (CMX_CAP_COUNT + 1);
        if (points > CMX_AGR_MAX_WORK / terms)
            return CMX_ETOOBIG;
    }

    cmx_buf_init(&text, 1u << 20);
    a->series = cmx_arena_calloc(arena, (cells ? cells : 1) * CMX_CAP_COUNT * sizeof(*a->series));
    a->applied = cmx_arena_calloc(arena, (cells ? cells : 1) * sizeof(*a->applied));
    if (a->series == NULL || a->applied == NULL)
        goto out;
    for (size_t p = 0; p < a->n_products; p++) {
        int64_t *bp;
        size_t nbp = cmx_agr_breakpoints(a, p, &bp);
        if (nbp == (size_t)-1)
            goto out;
        free(tmp);
        free(atmp);
        tmp = malloc((nbp + 1) * sizeof(*tmp));
        atmp = malloc((nbp + 1) * sizeof(*atmp));
        if (tmp == NULL || atmp == NULL) {
            free(bp);
            goto out;
        }
        for (size_t c = 0; c < a->n_clouds; c++) {
            for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
                size_t n = 0;
                for (size_t i = 0; i <= nbp; i++) {
                    int64_t t = i == 0 ? INT64_MIN : bp[i - 1];
                    struct cmx_agr_decision d;
                    cmx_agreements_evaluate(a, p, c, 1u << k, t, &d);
                    if (n > 0 && same_interval(&tmp[n - 1], &d))
                        continue;
                    tmp[n++] = (struct cmx_agr_interval){
                        .start = t,
                        .when = d.when,
                        .by = d.by,
                        .other = (int32_t)d.other,
                        .reason = (uint8_t)d.reason,
                        .on_primary = d.on_primary,
                    };
                }
                struct cmx_agr_series *s = &a->series[(p * a->n_clouds + c) * CMX_CAP_COUNT + k];
                s->iv = cmx_arena_alloc(arena, n * sizeof(*s->iv));
                if (s->iv == NULL) {
                    free(bp);
                    goto out;
                }
                memcpy(s->iv, tmp, n * sizeof(*s->iv));
                s->n = n;
            }

            size_t n = 0;
            for (size_t i = 0; i <= nbp; i++) {
                int64_t t = i == 0 ? INT64_MIN : bp[i - 1];
                bool any = applied_text(a, p, c, t, &text);
                if (n > 0 && ((!any && atmp[n - 1].value == NULL) ||
                              (any && atmp[n - 1].value != NULL &&
                               strcmp(atmp[n - 1].value, text.data) == 0)))
                    continue;
                const char *value = NULL;
                if (any) {
                    value = cmx_arena_strndup(arena, text.data, text.len);
                    if (value == NULL) {
                        free(bp);
                        goto out;
                    }
                }
                atmp[n++] = (struct cmx_agr_applied){.start = t, .value = value};
            }
            struct cmx_agr_aseries *as = &a->applied[p * a->n_clouds + c];
            as->iv = cmx_arena_alloc(arena, n * sizeof(*as->iv));
            if (as->iv == NULL) {
                free(bp);
                goto out;
            }
            memcpy(as->iv, atmp, n * sizeof(*as->iv));
            as->n = n;
        }
        free(bp);
    }
    rc = 0;
out:
    free(tmp);
    free(atmp);
    cmx_buf_free(&text);
    return rc;
}

/* ---- lookups ----------------------------------------------------------------------- */

/* The interval holding t (the last with start <= t; iv[0].start is INT64_MIN). */
static size_t find(const struct cmx_agr_series *s, int64_t t)
{
    size_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->iv[mid].start <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static const struct cmx_agr_series *series(const struct cmx_agreements *a, size_t p, size_t c,
                                           unsigned k)
{
    return &a->series[(p * a->n_clouds + c) * CMX_CAP_COUNT + k];
}

const char *cmx_agr_applied_at(const struct cmx_agreements *a, size_t p, size_t c, int64_t t)
{
    const struct cmx_agr_aseries *s = &a->applied[p * a->n_clouds + c];
    size_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->iv[mid].start <= t)
            lo = mid;
        else
            hi = mid;
    }
    return s->n ? s->iv[lo].value : NULL;
}

enum cmx_agr_reason cmx_agreements_reason(const struct cmx_agreements *a, size_t p, size_t c,
                                          unsigned caps, int64_t at)
{
    unsigned best = CMX_AGR_ALLOWED;
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(caps & (1u << k)))
            continue;
        const struct cmx_agr_series *s = series(a, p, c, k);
        unsigned r = s->iv[find(s, at)].reason;
        if (r != CMX_AGR_ALLOWED && (best == CMX_AGR_ALLOWED || r < best))
            best = r;
    }
    return (enum cmx_agr_reason)best;
}

/* The combined decision at t (no next_change / applied). */
static void combined(const struct cmx_agreements *a, size_t p, size_t c, unsigned caps, int64_t t,
                     struct cmx_agr_decision *out)
{
    const struct cmx_agr_interval *pick = NULL;
    unsigned pick_cap = 0;

    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(caps & (1u << k)))
            continue;
        const struct cmx_agr_series *s = series(a, p, c, k);
        const struct cmx_agr_interval *iv = &s->iv[find(s, t)];
        bool better;
        if (pick == NULL)
            better = true;
        else if (pick->reason == CMX_AGR_ALLOWED)
            better = iv->reason != CMX_AGR_ALLOWED;
        else
            better = iv->reason != CMX_AGR_ALLOWED && iv->reason < pick->reason;
        if (better) {
            pick = iv;
            pick_cap = 1u << k;
        }
    }
    memset(out, 0, sizeof(*out));
    out->reason = (enum cmx_agr_reason)pick->reason;
    out->by = pick->by;
    out->when = pick->when;
    out->other = pick->other;
    out->on_primary = pick->on_primary;
    out->cap = pick_cap;
    out->next_change = CMX_AGR_NEVER;
}

/* The first interval start after t among the series of caps, CMX_AGR_NEVER when none. */
static int64_t next_start(const struct cmx_agreements *a, size_t p, size_t c, unsigned caps,
                          int64_t t)
{
    int64_t best = CMX_AGR_NEVER;
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(caps & (1u << k)))
            continue;
        const struct cmx_agr_series *s = series(a, p, c, k);
        size_t i = find(s, t) + 1;
        if (i < s->n && s->iv[i].start < best)
            best = s->iv[i].start;
    }
    return best;
}

static bool valid(const struct cmx_agreements *a, size_t p, size_t c, unsigned caps)
{
    return a != NULL && a->series != NULL && p < a->n_products && c < a->n_clouds &&
           (caps & CMX_CAP_ALL) != 0;
}

int cmx_agreements_decide(const struct cmx_agreements *a, size_t p, size_t c, unsigned caps,
                          int64_t at, struct cmx_agr_decision *out)
{
    struct cmx_agr_decision d;

    if (!valid(a, p, c, caps))
        return CMX_EINVAL;
    caps &= CMX_CAP_ALL;
    combined(a, p, c, caps, at, out);
    for (int64_t t = at;;) {
        t = next_start(a, p, c, caps, t);
        if (t == CMX_AGR_NEVER)
            break;
        combined(a, p, c, caps, t, &d);
        if (d.reason != out->reason || d.by != out->by) {
            out->next_change = t;
            break;
        }
    }
    out->applied = cmx_agr_applied_at(a, p, c, at);
    return 0;
}

int64_t cmx_agreements_allowed_from(const struct cmx_agreements *a, size_t p, size_t c,
                                    unsigned caps, int64_t at)
{
    if (!valid(a, p, c, caps))
        return CMX_AGR_NEVER;
    caps &= CMX_CAP_ALL;
    for (int64_t t = at; t != CMX_AGR_NEVER; t = next_start(a, p, c, caps, t)) {
        if (cmx_agreements_reason(a, p, c, caps, t) == CMX_AGR_ALLOWED)
            return t;
    }
    return CMX_AGR_NEVER;
}

/* ---- messages ---------------------------------------------------------------------- */

size_t cmx_agreements_message(const struct cmx_agreements *a, size_t p, size_t c,
                              const struct cmx_agr_decision *d, char *buf, size_t cap)
{
    const char *prod = a->products[p].name, *cloud = a->clouds[c];
    const char *other = d->other >= 0 && (size_t)d->other < a->n_clouds ? a->clouds[d->other] : "";
    char what[256], when[40];
    int n = 0;

    /* Name the capability when it is not the endpoint's own and the reason can depend on it
     * (only first launch does, through opt-outs). */
    if (d->cap != 0 && d->cap != CMX_CAP_CHAT && d->cap != CMX_CAP_EMBEDDINGS &&
        (d->reason == CMX_AGR_AWAITING_PRIMARY_LAUNCH || d->reason == CMX_AGR_HOLDBACK))
        snprintf(what, sizeof(what), "%s (%s)", prod, cmx_cap_name(d->cap));
    else
        snprintf(what, sizeof(what), "%s", prod);
    when[0] = '\0';
    if (d->when != CMX_AGR_NEVER)
        cmx_clock_format_short(d->when, when, sizeof(when));

    switch (d->reason) {
    case CMX_AGR_ALLOWED:
        if ((int64_t)c == a->maker_cloud)
            n = snprintf(buf, cap, "%s may serve %s as the maker's own cloud", cloud, what);
        else
            n = snprintf(buf, cap, "%s may serve %s", cloud, what);
        break;
    case CMX_AGR_EXCLUSIVE_TO_OTHER:
        cmx_clock_format_date(d->when, when, sizeof(when));
        n = snprintf(buf, cap, "%s is licensed exclusively to %s through %s", what, other, when);
        break;
    case CMX_AGR_NO_LICENCE:
        if (when[0] != '\0')
            n = snprintf(buf, cap, "%s's licence for %s starts on %s", cloud, what, when);
        else
            n = snprintf(buf, cap, "%s holds no licence for %s", cloud, what);
        break;
    case CMX_AGR_LICENCE_EXPIRED:
        cmx_clock_format_date(d->when, when, sizeof(when));
        n = snprintf(buf, cap, "%s's licence for %s ended on %s", cloud, what, when);
        break;
    case CMX_AGR_NOT_LAUNCHED:
        if (d->on_primary)
            n = snprintf(buf, cap, "%s has not launched on the primary cloud %s", what, cloud);
        else
            n = snprintf(buf, cap, "%s has not launched on %s", what, cloud);
        break;
    case CMX_AGR_AWAITING_PRIMARY_LAUNCH:
        n = snprintf(buf, cap, "%s has not launched on the primary cloud %s", what, other);
        break;
    case CMX_AGR_HOLDBACK:
        n = snprintf(buf, cap,
                     "%s is held back on %s until %s (%d day%s after its launch on the "
                     "primary cloud %s)",
                     what, cloud, when, d->by ? d->by->holdback_days : 0,
                     d->by && d->by->holdback_days == 1 ? "" : "s", other);
        break;
    }
    if (n < 0) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}
