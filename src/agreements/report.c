/* Reports over the precomputed decisions: the products x clouds matrix, the timeline of
 * changes and single checks, as text tables, CSV or JSON (CLI and admin API). They read the
 * same intervals that routing searches, so what they print is what routing does. */
#include "agreements/agreements_int.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cells ------------------------------------------------------------------------- */

/* The decision of one (product, cloud) at one instant, per declared capability. */
struct cell {
    unsigned caps;                              /* the product's capabilities */
    struct cmx_agr_decision cap[CMX_CAP_COUNT]; /* per capability bit (declared ones) */
    struct cmx_agr_decision all;                /* combined over caps */
    bool uniform;                               /* every capability has the same reason */
};

static void cell_at(const struct cmx_agreements *a, size_t p, size_t c, int64_t at,
                    struct cell *out)
{
    unsigned first = 0;

    out->caps = a->products[p].caps ? a->products[p].caps : CMX_CAP_CHAT;
    out->uniform = true;
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(out->caps & (1u << k)))
            continue;
        cmx_agreements_decide(a, p, c, 1u << k, at, &out->cap[k]);
        if (first == 0)
            first = 1u << k;
        else if (out->cap[k].reason != out->cap[__builtin_ctz(first)].reason)
            out->uniform = false;
    }
    cmx_agreements_decide(a, p, c, out->caps, at, &out->all);
}

/* "allowed" / "denied" when every capability is, else "partial". */
static const char *cell_decision(const struct cell *x)
{
    bool any_allowed = false, any_denied = false;
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(x->caps & (1u << k)))
            continue;
        any_allowed = any_allowed || x->cap[k].reason == CMX_AGR_ALLOWED;
        any_denied = any_denied || x->cap[k].reason != CMX_AGR_ALLOWED;
    }
    return any_allowed && any_denied ? "partial" : any_denied ? "denied" : "allowed";
}

/* "allowed", "holdback", or when the capabilities differ "partial(chat=holdback,
 * vision=allowed)" (some allowed) / "denied(chat=awaiting_primary_launch,tools=holdback)". */
static void cell_state(const struct cell *x, char *buf, size_t cap)
{
    size_t o;

    if (x->uniform) {
        snprintf(buf, cap, "%s", cmx_agr_reason_name(x->all.reason));
        return;
    }
    o = (size_t)snprintf(buf, cap, "%s(", cell_decision(x));
    for (unsigned k = 0; k < CMX_CAP_COUNT && o < cap; k++) {
        if (!(x->caps & (1u << k)))
            continue;
        o += (size_t)snprintf(buf + o, cap - o, "%s%s=%s", buf[o - 1] == '(' ? "" : ",",
                              cmx_cap_name(1u << k), cmx_agr_reason_name(x->cap[k].reason));
    }
    if (o < cap)
        snprintf(buf + o, cap - o, ")");
}

static bool same_state(const struct cell *x, const struct cell *y)
{
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if ((x->caps & (1u << k)) && x->cap[k].reason != y->cap[k].reason)
            return false;
    }
    return true;
}

/* ---- output helpers ------------------------------------------------------------------ */

static int jstr(struct cmx_buf *b, const char *s)
{
    int rc;
    if (s == NULL)
        return cmx_buf_puts(b, "null");
    if ((rc = cmx_buf_puts(b, "\"")) != 0 || (rc = cmx_buf_json_escape(b, s, strlen(s))) != 0)
        return rc;
    return cmx_buf_puts(b, "\"");
}

static int jtime(struct cmx_buf *b, int64_t t)
{
    char d[40];
    if (t == CMX_AGR_NEVER || t == INT64_MIN)
        return cmx_buf_puts(b, "null");
    cmx_clock_format_iso(t, d, sizeof(d));
    return jstr(b, d);
}

static int csv_field(struct cmx_buf *b, const char *s, bool last)
{
    int rc = 0;
    if (strpbrk(s, ",\"\r\n") != NULL) {
        rc = cmx_buf_puts(b, "\"");
        for (const char *p = s; *p && rc == 0; p++)
            rc = *p == '"' ? cmx_buf_puts(b, "\"\"") : cmx_buf_append(b, p, 1);
        if (rc == 0)
            rc = cmx_buf_puts(b, "\"");
    } else {
        rc = cmx_buf_puts(b, s);
    }
    if (rc == 0)
        rc = cmx_buf_puts(b, last ? "\r\n" : ",");
    return rc;
}

static const char *label_of(const struct cmx_agr_version *v)
{
    return v ? v->label : NULL;
}

/* One decision's members: "decision","reason","message","agreement","next_change". */
static int j_decision(struct cmx_buf *b, const struct cmx_agreements *a, size_t p, size_t c,
                      const struct cmx_agr_decision *d, const char *decision)
{
    char msg[512];
    int rc;

    cmx_agreements_message(a, p, c, d, msg, sizeof(msg));
    if ((rc = cmx_buf_puts(b, "\"decision\":")) != 0 || (rc = jstr(b, decision)) != 0 ||
        (rc = cmx_buf_puts(b, ",\"reason\":")) != 0 ||
        (rc = jstr(b, d->reason == CMX_AGR_ALLOWED ? NULL : cmx_agr_reason_name(d->reason))) != 0 ||
        (rc = cmx_buf_puts(b, ",\"message\":")) != 0 || (rc = jstr(b, msg)) != 0 ||
        (rc = cmx_buf_puts(b, ",\"agreement\":")) != 0 || (rc = jstr(b, label_of(d->by))) != 0 ||
        (rc = cmx_buf_puts(b, ",\"next_change\":")) != 0 || (rc = jtime(b, d->next_change)) != 0)
        return rc;
    return 0;
}

/* Pads s to width w in a table; the last column ends the line (without trailing blanks). */
static int pad(struct cmx_buf *b, const char *s, size_t w, bool last)
{
    int rc = cmx_buf_puts(b, s);
    if (rc == 0 && last) {
        while (b->len > 0 && b->data[b->len - 1] == ' ')
            b->data[--b->len] = '\0';
        return cmx_buf_puts(b, "\n");
    }
    if (rc != 0)
        return rc;
    for (size_t n = strlen(s); n < w + 2 && rc == 0; n++)
        rc = cmx_buf_puts(b, " ");
    return rc;
}

/* ---- matrix ------------------------------------------------------------------------ */

static int matrix_json(const struct cmx_agreements *a, int64_t at, struct cmx_buf *b)
{
    int rc;

    if ((rc = cmx_buf_puts(b, "{\"at\":")) != 0 || (rc = jtime(b, at)) != 0 ||
        (rc = cmx_buf_puts(b, ",\"maker\":")) != 0 || (rc = jstr(b, a ? a->maker : NULL)) != 0 ||
        (rc = cmx_buf_puts(b, ",\"clouds\":[")) != 0)
        return rc;
    for (size_t c = 0; a != NULL && c < a->n_clouds && rc == 0; c++) {
        if ((rc = cmx_buf_puts(b, c ? "," : "")) == 0)
            rc = jstr(b, a->clouds[c]);
    }
    if (rc == 0)
        rc = cmx_buf_puts(b, "],\"products\":[");
    for (size_t p = 0; a != NULL && p < a->n_products && rc == 0; p++) {
        if ((rc = cmx_buf_puts(b, p ? "," : "")) == 0)
            rc = jstr(b, a->products[p].name);
    }
    if (rc == 0)
        rc = cmx_buf_puts(b, "],\"cells\":[");
    bool first = true;
    for (size_t p = 0; a != NULL && p < a->n_products && rc == 0; p++) {
        for (size_t c = 0; c < a->n_clouds && rc == 0; c++) {
            struct cell x;
            cell_at(a, p, c, at, &x);
            if ((rc = cmx_buf_puts(b, first ? "{\"product\":" : ",{\"product\":")) != 0 ||
                (rc = jstr(b, a->products[p].name)) != 0 ||
                (rc = cmx_buf_puts(b, ",\"cloud\":")) != 0 || (rc = jstr(b, a->clouds[c])) != 0 ||
                (rc = cmx_buf_puts(b, ",")) != 0 ||
                (rc = j_decision(b, a, p, c, &x.all, cell_decision(&x))) != 0 ||
                (rc = cmx_buf_puts(b, ",\"applied\":")) != 0 ||
                (rc = jstr(b, x.all.applied)) != 0 ||
                (rc = cmx_buf_puts(b, ",\"capabilities\":{")) != 0)
                break;
            first = false;
            bool first_cap = true;
            for (unsigned k = 0; k < CMX_CAP_COUNT && rc == 0; k++) {
                if (!(x.caps & (1u << k)))
                    continue;
                const struct cmx_agr_decision *d = &x.cap[k];
                if ((rc = cmx_buf_puts(b, first_cap ? "" : ",")) != 0 ||
                    (rc = jstr(b, cmx_cap_name(1u << k))) != 0 ||
                    (rc = cmx_buf_puts(b, ":{")) != 0 ||
                    (rc = j_decision(b, a, p, c, d,
                                     d->reason == CMX_AGR_ALLOWED ? "allowed" : "denied")) != 0)
                    break;
                rc = cmx_buf_puts(b, "}");
                first_cap = false;
            }
            if (rc == 0)
                rc = cmx_buf_puts(b, "}}");
        }
    }
    if (rc == 0)
        rc = cmx_buf_puts(b, "]}\n");
    return rc;
}

int cmx_agreements_matrix(const struct cmx_config *cfg, int64_t at, enum cmx_agr_format f,
                          struct cmx_buf *out)
{
    const struct cmx_agreements *a = cfg->agreements;
    char state[256], d[40];
    int rc = 0;

    if (a != NULL && a->series == NULL)
        a = NULL;
    if (f == CMX_AGR_FORMAT_JSON)
        return matrix_json(a, at, out);
    if (a == NULL || a->n_products == 0) {
        if (f == CMX_AGR_FORMAT_CSV)
            return cmx_buf_puts(out, "product\r\n");
        return cmx_buf_puts(out, "no products are defined: no model is governed by agreements\n");
    }

    /* Column widths: the widest cell of each cloud (tables only). */
    size_t wp = strlen("PRODUCT"), *w = calloc(a->n_clouds + 1, sizeof(*w));
    if (w == NULL)
        return CMX_ENOMEM;
    for (size_t p = 0; p < a->n_products; p++) {
        if (strlen(a->products[p].name) > wp)
            wp = strlen(a->products[p].name);
        for (size_t c = 0; c < a->n_clouds; c++) {
            struct cell x;
            cell_at(a, p, c, at, &x);
            cell_state(&x, state, sizeof(state));
            w[c] = strlen(state) > w[c] ? strlen(state) : w[c];
            w[c] = strlen(a->clouds[c]) > w[c] ? strlen(a->clouds[c]) : w[c];
        }
    }
    if (f == CMX_AGR_FORMAT_TABLE) {
        cmx_clock_format_iso(at, d, sizeof(d));
        rc = cmx_buf_printf(out, "at %s%s%s%s\n", d, a->maker ? " (maker: " : "",
                            a->maker ? a->maker : "", a->maker ? ")" : "");
        if (rc == 0)
            rc = pad(out, "PRODUCT", wp, a->n_clouds == 0);
        for (size_t c = 0; c < a->n_clouds && rc == 0; c++)
            rc = pad(out, a->clouds[c], w[c], c + 1 == a->n_clouds);
    } else {
        rc = csv_field(out, "product", a->n_clouds == 0);
        for (size_t c = 0; c < a->n_clouds && rc == 0; c++)
            rc = csv_field(out, a->clouds[c], c + 1 == a->n_clouds);
    }
    for (size_t p = 0; p < a->n_products && rc == 0; p++) {
        if (f == CMX_AGR_FORMAT_TABLE)
            rc = pad(out, a->products[p].name, wp, a->n_clouds == 0);
        else
            rc = csv_field(out, a->products[p].name, a->n_clouds == 0);
        for (size_t c = 0; c < a->n_clouds && rc == 0; c++) {
            struct cell x;
            cell_at(a, p, c, at, &x);
            cell_state(&x, state, sizeof(state));
            if (f == CMX_AGR_FORMAT_TABLE)
                rc = pad(out, state, w[c], c + 1 == a->n_clouds);
            else
                rc = csv_field(out, state, c + 1 == a->n_clouds);
        }
    }
    free(w);
    return rc;
}

int cmx_agreements_matrix_json(const struct cmx_config *cfg, uint64_t at_ms, struct cmx_buf *out)
{
    int64_t at = at_ms >= (uint64_t)CMX_AGR_NEVER ? CMX_AGR_NEVER - 1 : (int64_t)at_ms;
    return cmx_agreements_matrix(cfg, at, CMX_AGR_FORMAT_JSON, out);
}

/* ---- timeline ---------------------------------------------------------------------- */

struct change {
    int64_t at;       /* when */
    size_t p, c;      /* which product, cloud */
    struct cell from; /* just before */
    struct cell to;   /* from at on */
};

static int change_cmp(const void *x, const void *y)
{
    const struct change *a = x, *b = y;
    if (a->at != b->at)
        return a->at < b->at ? -1 : 1;
    if (a->p != b->p)
        return a->p < b->p ? -1 : 1;
    return a->c < b->c ? -1 : a->c > b->c;
}

/* Why the change happened, in words. */
static void change_reason(const struct cmx_agreements *a, const struct change *ch, char *buf,
                          size_t cap)
{
    const struct cmx_agr_decision *old = &ch->from.all, *now = &ch->to.all;
    const char *prod = a->products[ch->p].name, *cloud = a->clouds[ch->c];
    const char *other = old->other >= 0 ? a->clouds[old->other] : "";

    if (now->reason != CMX_AGR_ALLOWED) {
        char msg[400];
        cmx_agreements_message(a, ch->p, ch->c, now, msg, sizeof(msg));
        snprintf(buf, cap, "%s", msg);
        return;
    }
    switch (old->reason) {
    case CMX_AGR_EXCLUSIVE_TO_OTHER:
        snprintf(buf, cap, "the exclusive licence of %s ended", other);
        break;
    case CMX_AGR_NO_LICENCE:
        snprintf(buf, cap, "%s's licence for %s starts", cloud, prod);
        break;
    case CMX_AGR_LICENCE_EXPIRED:
        snprintf(buf, cap, "%s holds a new licence for %s", cloud, prod);
        break;
    case CMX_AGR_NOT_LAUNCHED:
        snprintf(buf, cap, "%s launches on %s", prod, cloud);
        break;
    case CMX_AGR_AWAITING_PRIMARY_LAUNCH:
        snprintf(buf, cap, "%s launches on the primary cloud %s", prod, other);
        break;
    case CMX_AGR_HOLDBACK:
        snprintf(buf, cap, "the holdback after the launch on %s ends", other);
        break;
    case CMX_AGR_ALLOWED:
        snprintf(buf, cap, "%s may serve %s", cloud, prod);
        break;
    }
    /* Allowed for some capabilities only: say which still wait. */
    if (!ch->to.uniform) {
        size_t o = strlen(buf);
        snprintf(buf + o, cap - o, " (%s)", "some capabilities still denied");
    }
}

/* Appends every change of (p, c) to *v. */
static int changes_of(const struct cmx_agreements *a, size_t p, size_t c, const int64_t *bp,
                      size_t nbp, struct change **v, size_t *n, size_t *cap)
{
    struct cell prev;
    cell_at(a, p, c, INT64_MIN, &prev);
    for (size_t i = 0; i < nbp; i++) {
        struct cell x;
        cell_at(a, p, c, bp[i], &x);
        if (same_state(&prev, &x))
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            struct change *nv = realloc(*v, ncap * sizeof(*nv));
            if (nv == NULL)
                return CMX_ENOMEM;
            *v = nv;
            *cap = ncap;
        }
        (*v)[(*n)++] = (struct change){.at = bp[i], .p = p, .c = c, .from = prev, .to = x};
        prev = x;
    }
    return 0;
}

int cmx_agreements_timeline(const struct cmx_config *cfg, const char *product,
                            enum cmx_agr_format f, struct cmx_buf *out)
{
    const struct cmx_agreements *a = cfg->agreements;
    struct change *v = NULL;
    size_t n = 0, cap = 0;
    int64_t only = -1;
    int rc = 0;

    if (a != NULL && a->series == NULL)
        a = NULL;
    if (product != NULL) {
        only = cmx_agreements_product(a, product);
        if (only < 0)
            return CMX_ENOTFOUND;
    }
    for (size_t p = 0; a != NULL && p < a->n_products && rc == 0; p++) {
        int64_t *bp;
        if (only >= 0 && (size_t)only != p)
            continue;
        size_t nbp = cmx_agr_breakpoints(a, p, &bp);
        if (nbp == (size_t)-1)
            return free(v), CMX_ENOMEM;
        for (size_t c = 0; c < a->n_clouds && rc == 0; c++)
            rc = changes_of(a, p, c, bp, nbp, &v, &n, &cap);
        free(bp);
    }
    if (rc != 0) {
        free(v);
        return rc;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), change_cmp);

    /* Rows of text: at, product, cloud, from, to, reason, agreement. */
    char(*cols)[7][400] = calloc(n ? n : 1, sizeof(*cols));
    if (cols == NULL) {
        free(v);
        return CMX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct change *ch = &v[i];
        const struct cmx_agr_version *by = ch->to.all.by ? ch->to.all.by : ch->from.all.by;
        /* A term that stopped applying because its agreement was amended: name the
         * amendment. */
        if (by != NULL && cmx_agr_in_force(by->agreement, ch->at) != NULL)
            by = cmx_agr_in_force(by->agreement, ch->at);
        cmx_clock_format_short(ch->at, cols[i][0], sizeof(cols[i][0]));
        snprintf(cols[i][1], sizeof(cols[i][1]), "%s", a->products[ch->p].name);
        snprintf(cols[i][2], sizeof(cols[i][2]), "%s", a->clouds[ch->c]);
        cell_state(&ch->from, cols[i][3], sizeof(cols[i][3]));
        cell_state(&ch->to, cols[i][4], sizeof(cols[i][4]));
        change_reason(a, ch, cols[i][5], sizeof(cols[i][5]));
        snprintf(cols[i][6], sizeof(cols[i][6]), "%s", by ? by->label : "");
    }

    if (f == CMX_AGR_FORMAT_JSON) {
        static const char *const keys[] = {"at", "product", "cloud",    "from",
                                           "to", "reason",  "agreement"};
        rc = cmx_buf_puts(out, "{\"changes\":[");
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = cmx_buf_puts(out, i ? ",{" : "{");
            for (size_t k = 0; k < 7 && rc == 0; k++) {
                if ((rc = cmx_buf_printf(out, "%s\"%s\":", k ? "," : "", keys[k])) != 0)
                    break;
                if (k == 0)
                    rc = jtime(out, v[i].at);
                else
                    rc = jstr(out, k == 6 && cols[i][6][0] == '\0' ? NULL : cols[i][k]);
            }
            if (rc == 0)
                rc = cmx_buf_puts(out, "}");
        }
        if (rc == 0)
            rc = cmx_buf_puts(out, "]}\n");
    } else if (f == CMX_AGR_FORMAT_CSV) {
        static const char *const head[] = {"date", "product", "cloud",    "from",
                                           "to",   "reason",  "agreement"};
        for (size_t k = 0; k < 7 && rc == 0; k++)
            rc = csv_field(out, head[k], k == 6);
        for (size_t i = 0; i < n && rc == 0; i++) {
            for (size_t k = 0; k < 7 && rc == 0; k++)
                rc = csv_field(out, cols[i][k], k == 6);
        }
    } else {
        static const char *const head[] = {"DATE", "PRODUCT", "CLOUD",    "FROM",
                                           "TO",   "REASON",  "AGREEMENT"};
        size_t w[7];
        for (size_t k = 0; k < 7; k++) {
            w[k] = strlen(head[k]);
            for (size_t i = 0; i < n; i++)
                w[k] = strlen(cols[i][k]) > w[k] ? strlen(cols[i][k]) : w[k];
        }
        if (n == 0)
            rc = cmx_buf_puts(out, "no decision ever changes\n");
        for (size_t k = 0; k < 7 && rc == 0 && n > 0; k++)
            rc = pad(out, head[k], w[k], k == 6);
        for (size_t i = 0; i < n && rc == 0; i++) {
            for (size_t k = 0; k < 7 && rc == 0; k++)
                rc = pad(out, cols[i][k], w[k], k == 6);
        }
    }
    free(cols);
    free(v);
    return rc;
}

/* ---- check ------------------------------------------------------------------------- */

struct check {
    const char *product; /* product name, NULL when ungoverned */
    const char *model;   /* model name, or NULL */
    const char *cloud;   /* cloud label */
    int64_t p, c;        /* indexes; p -1 when ungoverned */
    unsigned caps;       /* capabilities checked */
    int64_t at;          /* instant */
    struct cmx_agr_decision d;
    char msg[512];
    int64_t from; /* first allowed instant >= at */
};

static bool known_cloud(const struct cmx_config *cfg, const char *cloud)
{
    if (cfg->agreements != NULL)
        return cmx_agreements_cloud(cfg->agreements, cloud) >= 0;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        if (cfg->providers[i].cloud != NULL && strcmp(cfg->providers[i].cloud, cloud) == 0)
            return true;
    }
    return false;
}

static int check_run(const struct cmx_config *cfg, const char *product, const char *model,
                     const char *cloud, const char *capability, uint64_t at_ms, struct check *k,
                     char *err, size_t err_cap)
{
    const struct cmx_agreements *a = cfg->agreements;

    memset(k, 0, sizeof(*k));
    k->p = -1;
    k->at = at_ms >= (uint64_t)CMX_AGR_NEVER ? CMX_AGR_NEVER - 1 : (int64_t)at_ms;
    if (a != NULL && a->series == NULL)
        a = NULL;
    if ((product == NULL) == (model == NULL)) {
        snprintf(err, err_cap, "give either a product or a model");
        return CMX_EINVAL;
    }
    if (cloud == NULL || *cloud == '\0') {
        snprintf(err, err_cap, "a cloud is required");
        return CMX_EINVAL;
    }
    if (!known_cloud(cfg, cloud)) {
        snprintf(err, err_cap, "no cloud named \"%.100s\" appears in the configuration", cloud);
        return CMX_ENOTFOUND;
    }
    k->cloud = cloud;
    if (model != NULL) {
        const struct cmx_model_cfg *m = cmx_config_find_model(cfg, model, strlen(model));
        if (m == NULL) {
            snprintf(err, err_cap, "no model named \"%.100s\" is configured", model);
            return CMX_ENOTFOUND;
        }
        k->model = m->name;
        k->p = cmx_agreements_model_product(cfg, m);
    } else {
        k->p = cmx_agreements_product(a, product);
        if (k->p < 0) {
            snprintf(err, err_cap, "no product named \"%.100s\" is defined", product);
            return CMX_ENOTFOUND;
        }
    }
    if (capability != NULL && *capability != '\0') {
        const char *s = capability;
        while (*s) {
            size_t len = strcspn(s, ",");
            unsigned bit = cmx_cap_parse(s, len);
            if (bit == 0) {
                snprintf(err, err_cap,
                         "unknown capability \"%.*s\" (valid: chat, embeddings, tools, vision, "
                         "audio)",
                         (int)(len > 60 ? 60 : len), s);
                return CMX_EINVAL;
            }
            k->caps |= bit;
            s += len;
            if (*s == ',')
                s++;
        }
    }
    if (k->p < 0) {
        if (k->caps == 0)
            k->caps = CMX_CAP_CHAT;
        return 0; /* ungoverned */
    }
    if (k->caps == 0) {
        unsigned declared = a->products[k->p].caps;
        k->caps =
            (declared & CMX_CAP_CHAT) || declared == 0 ? CMX_CAP_CHAT : declared & (~declared + 1);
    }
    k->product = a->products[k->p].name;
    k->c = cmx_agreements_cloud(a, cloud);
    cmx_agreements_decide(a, (size_t)k->p, (size_t)k->c, k->caps, k->at, &k->d);
    cmx_agreements_message(a, (size_t)k->p, (size_t)k->c, &k->d, k->msg, sizeof(k->msg));
    k->from = cmx_agreements_allowed_from(a, (size_t)k->p, (size_t)k->c, k->caps, k->at);
    return 0;
}

int cmx_agreements_check_json(const struct cmx_config *cfg, const char *product, const char *model,
                              const char *cloud, const char *capability, uint64_t at_ms,
                              struct cmx_buf *out, char *err, size_t err_cap)
{
    struct check k;
    int rc = check_run(cfg, product, model, cloud, capability, at_ms, &k, err, err_cap);
    bool governed = k.p >= 0;

    if (rc != 0)
        return rc;
    if ((rc = cmx_buf_puts(out, "{\"product\":")) != 0 || (rc = jstr(out, k.product)) != 0 ||
        (rc = cmx_buf_puts(out, ",\"model\":")) != 0 || (rc = jstr(out, k.model)) != 0 ||
        (rc = cmx_buf_puts(out, ",\"cloud\":")) != 0 || (rc = jstr(out, k.cloud)) != 0 ||
        (rc = cmx_buf_puts(out, ",\"capabilities\":[")) != 0)
        return rc;
    for (unsigned i = 0, first = 1; i < CMX_CAP_COUNT && rc == 0; i++) {
        if (!(k.caps & (1u << i)))
            continue;
        if ((rc = cmx_buf_puts(out, first ? "" : ",")) == 0)
            rc = jstr(out, cmx_cap_name(1u << i));
        first = 0;
    }
    if (rc == 0 &&
        ((rc = cmx_buf_puts(out, "],\"at\":")) != 0 || (rc = jtime(out, k.at)) != 0 ||
         (rc = cmx_buf_printf(out, ",\"governed\":%s,", governed ? "true" : "false")) != 0))
        return rc;
    if (rc != 0)
        return rc;
    if (!governed) {
        return cmx_buf_puts(out, "\"decision\":\"allowed\",\"reason\":null,\"message\":"
                                 "\"the model is not governed by any agreement\",\"agreement\":"
                                 "null,\"applied\":null,\"next_change\":null,"
                                 "\"may_serve_from\":null}\n");
    }
    if ((rc = j_decision(out, cfg->agreements, (size_t)k.p, (size_t)k.c, &k.d,
                         k.d.reason == CMX_AGR_ALLOWED ? "allowed" : "denied")) != 0 ||
        (rc = cmx_buf_puts(out, ",\"applied\":")) != 0 || (rc = jstr(out, k.d.applied)) != 0 ||
        (rc = cmx_buf_puts(out, ",\"may_serve_from\":")) != 0 || (rc = jtime(out, k.from)) != 0)
        return rc;
    return cmx_buf_puts(out, "}\n");
}

int cmx_agreements_check_line(const struct cmx_config *cfg, const char *product, const char *model,
                              const char *cloud, const char *capability, uint64_t at_ms,
                              bool *allowed, struct cmx_buf *out, char *err, size_t err_cap)
{
    struct check k;
    char d[40];
    int rc = check_run(cfg, product, model, cloud, capability, at_ms, &k, err, err_cap);

    if (rc != 0)
        return rc;
    if (k.p < 0) {
        *allowed = true;
        return cmx_buf_printf(out, "allowed: model %s is not governed by any agreement\n", k.model);
    }
    *allowed = k.d.reason == CMX_AGR_ALLOWED;
    if (*allowed) {
        rc = cmx_buf_printf(out, "allowed: %s", k.msg);
        if (rc == 0 && k.d.applied != NULL)
            rc = cmx_buf_printf(out, " [%s]", k.d.applied);
        if (rc == 0 && k.d.next_change != CMX_AGR_NEVER) {
            cmx_clock_format_short(k.d.next_change, d, sizeof(d));
            rc = cmx_buf_printf(out, "; next change %s", d);
        }
    } else {
        rc = cmx_buf_printf(out, "denied %s: %s", cmx_agr_reason_name(k.d.reason), k.msg);
        if (rc == 0 && k.d.by != NULL)
            rc = cmx_buf_printf(out, " (%s)", k.d.by->label);
        if (rc == 0) {
            if (k.from != CMX_AGR_NEVER) {
                cmx_clock_format_short(k.from, d, sizeof(d));
                rc = cmx_buf_printf(out, "; %s may serve it from %s", k.cloud, d);
            } else {
                rc = cmx_buf_printf(out, "; %s may not serve it under the current terms", k.cloud);
            }
        }
    }
    return rc == 0 ? cmx_buf_puts(out, "\n") : rc;
}

/* ---- revenue shares ---------------------------------------------------------------- */

size_t cmx_agreements_revenue_shares(const struct cmx_agreements *a, int64_t at_ms,
                                     const char *cloud, const char *product,
                                     struct cmx_agr_share_view *out, size_t max)
{
    size_t n = 0;
    int64_t c, p;

    if (a == NULL)
        return 0;
    c = cmx_agreements_cloud(a, cloud);
    p = cmx_agreements_product(a, product);
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = cmx_agr_in_force(&a->agreements[i], at_ms);
        if (v == NULL)
            continue;
        for (size_t j = 0; j < v->n_shares; j++) {
            const struct cmx_agr_revshare *s = &v->shares[j];
            bool match = s->from <= at_ms && at_ms <= s->until;
            if (match && !s->base_all) {
                bool cm = s->n_clouds == 0, pm = s->n_products == 0;
                for (size_t k = 0; k < s->n_clouds && c >= 0; k++)
                    cm = cm || s->clouds[k] == (size_t)c;
                for (size_t k = 0; k < s->n_products && p >= 0; k++)
                    pm = pm || s->products[k] == (size_t)p;
                match = cm && pm;
            }
            if (!match)
                continue;
            if (n < max)
                out[n] = (struct cmx_agr_share_view){
                    .agreement = v->label, .version = v, .term = s, .index = j};
            n++;
        }
    }
    return n;
}
