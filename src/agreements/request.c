/* The request path: a request's capabilities, the routing filter, the 403 message and the
 * x-cloudmux-agreement value. Only a denial allocates (its message, in the request arena). */
#include "agreements/agreements_int.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/err.h"
#include "router/router.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* ---- capabilities ------------------------------------------------------------------ */

/* A JSON array span with at least one element. */
static bool non_empty_array(const struct cmx_json_member *m)
{
    if (m == NULL || m->type != CMX_JSON_ARRAY)
        return false;
    for (size_t i = 1; i + 1 < m->val_len; i++) {
        char c = m->val[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return true;
    }
    return false;
}

static struct json_object *parse_span(const char *s, size_t len)
{
    struct json_tokener *tok = json_tokener_new_ex(CMX_JSON_MAX_DEPTH + 1);
    struct json_object *o;

    if (tok == NULL || len > INT32_MAX) {
        if (tok != NULL)
            json_tokener_free(tok);
        return NULL;
    }
    o = json_tokener_parse_ex(tok, s, (int)len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static bool str_is(struct json_object *o, const char *s)
{
    return o != NULL && json_object_is_type(o, json_type_string) &&
           strcmp(json_object_get_string(o), s) == 0;
}

/* Whether span m holds a \u escape: one could spell any word ("image\u005furl"), so a span
 * with one is always parsed. */
static bool has_u_escape(const struct cmx_json_member *m)
{
    const char *end = m->val + m->val_len;
    for (const char *p = m->val; (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p += 2) {
        if (p + 1 >= end)
            break;
        if (p[1] == 'u')
            return true;
    }
    return false;
}

/* Whether span m may hold word as a value: the parse that decides is skipped only when not. */
static bool mentions(const struct cmx_json_member *m, const char *word)
{
    return memmem(m->val, m->val_len, word, strlen(word)) != NULL || has_u_escape(m);
}

/* mentions() of "image_url" or "input_audio" in one pass: both have '_' at offset 5, and
 * memchr finds that (rare in text) far faster than a memmem per word (messages are most of
 * a request's bytes). */
static bool mentions_media(const struct cmx_json_member *m)
{
    const char *s = m->val, *end = s + m->val_len;
    for (const char *p = s; (p = memchr(p, '_', (size_t)(end - p))) != NULL; p++) {
        if (p - s < 5)
            continue;
        const char *w = p - 5;
        size_t room = (size_t)(end - w);
        if ((room >= 9 && memcmp(w, "image_url", 9) == 0) ||
            (room >= 11 && memcmp(w, "input_audio", 11) == 0))
            return true;
    }
    return has_u_escape(m);
}

/* VISION / AUDIO from the content parts of every message. */
static unsigned message_caps(const struct cmx_json_member *msgs)
{
    unsigned caps = 0;
    struct json_object *arr;

    if (msgs == NULL || msgs->type != CMX_JSON_ARRAY || !mentions_media(msgs))
        return 0;
    arr = parse_span(msgs->val, msgs->val_len);
    if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return 0;
    }
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        struct json_object *msg = json_object_array_get_idx(arr, i), *content, *type;
        if (!json_object_is_type(msg, json_type_object) ||
            !json_object_object_get_ex(msg, "content", &content) ||
            !json_object_is_type(content, json_type_array))
            continue;
        size_t k = json_object_array_length(content);
        for (size_t j = 0; j < k; j++) {
            struct json_object *part = json_object_array_get_idx(content, j);
            if (!json_object_is_type(part, json_type_object) ||
                !json_object_object_get_ex(part, "type", &type))
                continue;
            if (str_is(type, "image_url"))
                caps |= CMX_CAP_VISION;
            else if (str_is(type, "input_audio"))
                caps |= CMX_CAP_AUDIO;
        }
    }
    json_object_put(arr);
    return caps;
}

static bool modalities_audio(const struct cmx_json_member *m)
{
    struct json_object *arr;
    bool audio = false;

    if (m == NULL || m->type != CMX_JSON_ARRAY || !mentions(m, "audio"))
        return false;
    arr = parse_span(m->val, m->val_len);
    if (arr != NULL && json_object_is_type(arr, json_type_array)) {
        size_t n = json_object_array_length(arr);
        for (size_t i = 0; i < n && !audio; i++)
            audio = str_is(json_object_array_get_idx(arr, i), "audio");
    }
    json_object_put(arr);
    return audio;
}

unsigned cmx_caps_from_request(int endpoint, const char *body, size_t len,
                               const struct cmx_json_member *m, size_t n)
{
    unsigned caps;
    const struct cmx_json_member *audio;

    (void)body;
    (void)len;
    if (endpoint == 1)
        return CMX_CAP_EMBEDDINGS;
    caps = CMX_CAP_CHAT;
    if (non_empty_array(cmx_json_find(m, n, "tools")) ||
        non_empty_array(cmx_json_find(m, n, "functions")))
        caps |= CMX_CAP_TOOLS;
    audio = cmx_json_find(m, n, "audio");
    if ((audio != NULL && audio->type != CMX_JSON_NULL) ||
        modalities_audio(cmx_json_find(m, n, "modalities")))
        caps |= CMX_CAP_AUDIO;
    caps |= message_caps(cmx_json_find(m, n, "messages"));
    return caps;
}

/* ---- the filter -------------------------------------------------------------------- */

static int64_t at_of(uint64_t now_ms)
{
    return now_ms >= (uint64_t)CMX_AGR_NEVER ? CMX_AGR_NEVER - 1 : (int64_t)now_ms;
}

/* The (product, cloud) of deployment d of chk's model; false when not governed. */
static bool governed(const struct cmx_agreement_check *chk, const struct cmx_deployment_cfg *d,
                     size_t *p, size_t *c)
{
    const struct cmx_config *cfg = chk->cfg;
    const struct cmx_agreements *a = cfg->agreements;

    if (a == NULL || a->series == NULL || chk->model == NULL || d == NULL || d->provider == NULL)
        return false;
    int64_t pi = cmx_agreements_model_product(cfg, chk->model);
    if (pi < 0)
        return false;
    const struct cmx_provider_cfg *pr = d->provider;
    if (pr < cfg->providers || pr >= cfg->providers + cfg->n_providers)
        return false;
    int64_t ci = a->provider_cloud[pr - cfg->providers];
    if (ci < 0)
        return false;
    *p = (size_t)pi;
    *c = (size_t)ci;
    return true;
}

static unsigned caps_of(const struct cmx_agreement_check *chk)
{
    unsigned caps = chk->caps & CMX_CAP_ALL;
    return caps ? caps : CMX_CAP_CHAT;
}

bool cmx_agreements_filter(void *ud, const struct cmx_deployment_cfg *d, const char **why)
{
    const struct cmx_agreement_check *chk = ud;
    const struct cmx_agreements *a;
    size_t p, c;

    if (!governed(chk, d, &p, &c))
        return true;
    a = chk->cfg->agreements;
    int64_t at = at_of(chk->now_ms);
    enum cmx_agr_reason r = cmx_agreements_reason(a, p, c, caps_of(chk), at);
    if (r == CMX_AGR_ALLOWED)
        return true;

    *why = cmx_agr_reason_name(r); /* the message is built only when a 403 needs it */
    return false;
}

size_t cmx_agreements_why(const struct cmx_agreement_check *chk, const struct cmx_deployment_cfg *d,
                          char *buf, size_t cap)
{
    size_t p, c;
    struct cmx_agr_decision dec;
    char msg[512];

    if (cap == 0)
        return 0;
    buf[0] = '\0';
    if (!governed(chk, d, &p, &c))
        return 0;
    int64_t at = at_of(chk->now_ms);
    cmx_agreements_decide(chk->cfg->agreements, p, c, caps_of(chk), at, &dec);
    if (dec.reason == CMX_AGR_ALLOWED)
        return 0;
    cmx_agreements_message(chk->cfg->agreements, p, c, &dec, msg, sizeof(msg));
    int n = snprintf(buf, cap, "%s: %s", cmx_agr_reason_name(dec.reason), msg);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

const char *cmx_agreements_applied(const struct cmx_agreement_check *chk,
                                   const struct cmx_deployment_cfg *d)
{
    size_t p, c;
    if (!governed(chk, d, &p, &c))
        return NULL;
    return cmx_agr_applied_at(chk->cfg->agreements, p, c, at_of(chk->now_ms));
}

/* ---- the 403 message --------------------------------------------------------------- */

struct denied_cloud {
    size_t cloud;  /* cloud index */
    int64_t from;  /* cmx_agreements_allowed_from() */
    char msg[320]; /* cmx_agreements_message() */
    bool dup_msg;  /* the same message as an earlier cloud's */
    bool listed;   /* already named in a "may serve it from" clause */
};

int cmx_agreements_denial(const struct cmx_agreement_check *chk,
                          const struct cmx_route_excluded *ex, size_t n, struct cmx_buf *out)
{
    struct denied_cloud v[CMX_ROUTE_MAX];
    size_t nv = 0;
    const struct cmx_agreements *a;
    int64_t at = at_of(chk->now_ms);
    unsigned caps = caps_of(chk);
    int rc = 0;

    for (size_t i = 0; i < n && nv < CMX_ROUTE_MAX; i++) {
        size_t p, c;
        struct cmx_agr_decision dec;
        bool seen = false;
        if (!governed(chk, ex[i].d, &p, &c))
            continue;
        a = chk->cfg->agreements;
        if (cmx_agreements_reason(a, p, c, caps, at) == CMX_AGR_ALLOWED)
            continue; /* excluded by another filter */
        for (size_t j = 0; j < nv; j++)
            seen = seen || v[j].cloud == c;
        if (seen)
            continue;
        cmx_agreements_decide(a, p, c, caps, at, &dec);
        v[nv].cloud = c;
        v[nv].from = cmx_agreements_allowed_from(a, p, c, caps, at);
        cmx_agreements_message(a, p, c, &dec, v[nv].msg, sizeof(v[nv].msg));
        v[nv].dup_msg = false;
        v[nv].listed = false;
        for (size_t j = 0; j < nv; j++)
            v[nv].dup_msg = v[nv].dup_msg || strcmp(v[j].msg, v[nv].msg) == 0;
        nv++;
    }
    if (nv == 0)
        return CMX_ENOTFOUND;
    a = chk->cfg->agreements;

    bool first = true;
    for (size_t i = 0; i < nv && rc == 0; i++) {
        if (v[i].dup_msg)
            continue;
        rc = cmx_buf_printf(out, "%s%s", first ? "" : "; ", v[i].msg);
        first = false;
    }
    /* "azure and aws may serve it from 2026-12-15", one clause per date, earliest first. */
    for (;;) {
        int64_t date = CMX_AGR_NEVER;
        size_t count = 0, k = 0;
        for (size_t i = 0; i < nv; i++) {
            if (!v[i].listed && v[i].from < date)
                date = v[i].from;
        }
        if (date == CMX_AGR_NEVER || rc != 0)
            break;
        for (size_t i = 0; i < nv; i++)
            count += !v[i].listed && v[i].from == date;
        rc = cmx_buf_puts(out, "; ");
        for (size_t i = 0; i < nv && rc == 0; i++) {
            if (v[i].listed || v[i].from != date)
                continue;
            const char *sep = k == 0 ? "" : k + 1 == count ? " and " : ", ";
            rc = cmx_buf_printf(out, "%s%s", sep, a->clouds[v[i].cloud]);
            v[i].listed = true;
            k++;
        }
        char d[40];
        cmx_clock_format_short(date, d, sizeof(d));
        if (rc == 0)
            rc = cmx_buf_printf(out, " may serve it from %s", d);
    }
    return rc;
}
