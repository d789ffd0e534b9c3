/* AWS SigV4 header signing (see sigv4.h). The steps and their names follow AWS's
 * "Create a signed AWS API request" and the aws-c-auth test suite. */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co.: see digest2 */
#include "auth/sigv4.h"
#include "core/fmt.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SIGNED 48

/* SHA-256 through OpenSSL's low-level functions rather than EVP: a request hashes its body,
 * its canonical request and the string to sign (about 2 KiB), and EVP's provider dispatch
 * (fetch / init / final per digest) cost a quarter of that on top; the plain SHA256_CTX also
 * lets the HMAC pads of the cached signing key be kept as states (below). OpenSSL 3 marks
 * these deprecated, not removed; OPENSSL_SUPPRESS_DEPRECATED (top of file) says we know. */
static void digest2(const void *a, size_t an, const void *b, size_t bn, unsigned char out[32])
{
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, a, an);
    if (bn > 0)
        SHA256_Update(&c, b, bn);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof(c));
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    digest2(p ? p : (const void *)"", n, NULL, 0, d);
    cmx_hex_encode(d, sizeof(d), out);
}

/* HMAC-SHA256 (RFC 2104) with the key's inner and outer pads absorbed: two states that
 * every HMAC under that key starts from. */
struct hmac_key {
    SHA256_CTX inner; /* after (key ^ ipad) */
    SHA256_CTX outer; /* after (key ^ opad) */
};

static void hmac_init(struct hmac_key *h, const void *key, size_t klen)
{
    unsigned char k[64] = {0}, pad[64];
    if (klen > 64)
        digest2(key, klen, NULL, 0, k);
    else
        memcpy(k, key, klen);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    SHA256_Init(&h->inner);
    SHA256_Update(&h->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    SHA256_Init(&h->outer);
    SHA256_Update(&h->outer, pad, 64);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
}

static void hmac_with(const struct hmac_key *h, const void *msg, size_t mlen, unsigned char out[32])
{
    SHA256_CTX c = h->inner;
    unsigned char inner[32];
    SHA256_Update(&c, msg, mlen);
    SHA256_Final(inner, &c);
    c = h->outer;
    SHA256_Update(&c, inner, 32);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof(c));
}

static void hmac(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32])
{
    struct hmac_key h;
    hmac_init(&h, key, klen);
    hmac_with(&h, msg, mlen, out);
    OPENSSL_cleanse(&h, sizeof(h));
}

/* The signing key depends on the secret, the day, the region and the service only: each
 * worker thread keeps its last one, as HMAC states (no heap, so nothing to free at thread
 * exit). */
struct key_cache {
    char secret[160];
    char day[9];
    char region[40];
    char service[40];
    struct hmac_key key; /* HMAC under the signing key, pads absorbed */
    bool valid;
};
static _Thread_local struct key_cache kcache;

static const struct hmac_key *signing_key(const char *secret, const char *day, const char *region,
                                          const char *service, struct hmac_key *tmp)
{
    struct key_cache *kc = &kcache;
    size_t sl = strlen(secret), rl = strlen(region), svl = strlen(service);
    bool cacheable =
        sl < sizeof(kc->secret) && rl < sizeof(kc->region) && svl < sizeof(kc->service);
    if (cacheable && kc->valid && memcmp(kc->day, day, 9) == 0 &&
        memcmp(kc->secret, secret, sl + 1) == 0 && memcmp(kc->region, region, rl + 1) == 0 &&
        memcmp(kc->service, service, svl + 1) == 0)
        return &kc->key;
    unsigned char k[32];
    unsigned char ks[4 + sizeof(kc->secret)];
    if (sl + 4 <= sizeof(ks)) {
        memcpy(ks, "AWS4", 4);
        memcpy(ks + 4, secret, sl);
        hmac(ks, sl + 4, day, 8, k);
        OPENSSL_cleanse(ks, sizeof(ks));
    } else {
        /* a secret too long for the stack buffer: HMAC keys over 64 bytes are hashed */
        digest2("AWS4", 4, secret, sl, ks);
        hmac(ks, 32, day, 8, k);
    }
    hmac(k, 32, region, rl, k);
    hmac(k, 32, service, svl, k);
    hmac(k, 32, "aws4_request", 12, k);
    struct hmac_key *h = cacheable ? &kc->key : tmp;
    hmac_init(h, k, 32);
    OPENSSL_cleanse(k, sizeof(k));
    if (cacheable) {
        memcpy(kc->secret, secret, sl + 1);
        memcpy(kc->day, day, 9);
        memcpy(kc->region, region, rl + 1);
        memcpy(kc->service, service, svl + 1);
        kc->valid = true;
    }
    return h;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* Writes the SigV4 URI encoding of s to w (room for 3 * len bytes); returns its length. */
static size_t enc_to(char *w, const char *s, size_t len, bool keep_slash)
{
    static const char up[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            w[n++] = (char)c;
        } else {
            w[n++] = '%';
            w[n++] = up[c >> 4];
            w[n++] = up[c & 15];
        }
    }
    return n;
}

static int enc_append(struct cmx_buf *b, const char *s, size_t len, bool keep_slash)
{
    char *w = cmx_buf_reserve(b, len * 3);
    if (w == NULL)
        return CMX_ENOMEM;
    cmx_buf_commit(b, enc_to(w, s, len, keep_slash));
    return 0;
}

size_t cmx_sigv4_uri_encode(const char *s, size_t len, bool keep_slash, char *dst, size_t cap)
{
    /* the encoding only grows: count first, write straight into dst */
    size_t need = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        need += unreserved(c) || (keep_slash && c == '/') ? 1 : 3;
    }
    if (need >= cap)
        return (size_t)-1;
    enc_to(dst, s, len, keep_slash);
    dst[need] = '\0';
    return need;
}

/* Percent-decodes s into an arena string (invalid escapes are kept literally). */
static char *pct_decode(struct cmx_arena *a, const char *s, size_t len, size_t *olen)
{
    char *d = cmx_arena_alloc(a, len + 1);
    if (d == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = cmx_hex_val((unsigned char)s[i + 1])) >= 0 &&
            (l = cmx_hex_val((unsigned char)s[i + 2])) >= 0) {
            d[n++] = (char)(h * 16 + l);
            i += 2;
        } else {
            d[n++] = s[i];
        }
    }
    d[n] = '\0';
    *olen = n;
    return d;
}

/* RFC 3986 remove_dot_segments plus collapsing of empty segments, as aws-c-auth does for
 * non-S3 services. The result starts with '/' and keeps a trailing '/'. */
static int normalize(struct cmx_arena *a, const char *p, size_t len, const char **out, size_t *olen)
{
    size_t cap = len + 2, nseg = 0;
    const char **seg = cmx_arena_alloc(a, (len + 1) * sizeof(*seg));
    size_t *sl = cmx_arena_alloc(a, (len + 1) * sizeof(*sl));
    char *o = cmx_arena_alloc(a, cap);
    if (seg == NULL || sl == NULL || o == NULL)
        return CMX_ENOMEM;
    bool trailing = false;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && p[j] != '/')
            j++;
        size_t n = j - i;
        const char *s = p + i;
        trailing = n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
        if (n == 0 || (n == 1 && s[0] == '.')) {
            /* skip */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (nseg > 0)
                nseg--;
        } else {
            seg[nseg] = s;
            sl[nseg++] = n;
        }
        i = j + 1;
    }
    size_t w = 0;
    for (size_t k = 0; k < nseg; k++) {
        o[w++] = '/';
        memcpy(o + w, seg[k], sl[k]);
        w += sl[k];
    }
    if (w == 0 || trailing)
        o[w++] = '/';
    o[w] = '\0';
    *out = o;
    *olen = w;
    return 0;
}

struct kv {
    const char *k; /* encoded key */
    size_t kl;
    const char *v; /* encoded value */
    size_t vl;
};

static int kv_cmp(const void *x, const void *y)
{
    const struct kv *a = x, *b = y;
    size_t n = a->kl < b->kl ? a->kl : b->kl;
    int c = memcmp(a->k, b->k, n);
    if (c != 0)
        return c;
    if (a->kl != b->kl)
        return a->kl < b->kl ? -1 : 1;
    n = a->vl < b->vl ? a->vl : b->vl;
    c = memcmp(a->v, b->v, n);
    if (c != 0)
        return c;
    return a->vl < b->vl ? -1 : a->vl > b->vl;
}

/* Encodes an arena copy of s (for query keys and values). */
static const char *enc_dup(struct cmx_arena *a, const char *s, size_t len, size_t *olen)
{
    struct cmx_buf b;
    cmx_buf_init(&b, len * 3 + 1);
    const char *r = NULL;
    if (enc_append(&b, s, len, false) == 0) {
        r = cmx_arena_strndup(a, b.data ? b.data : "", b.len);
        *olen = b.len;
    }
    cmx_buf_free(&b);
    return r;
}

static int canonical_query(struct cmx_arena *a, const char *q, size_t len, struct cmx_buf *b)
{
    if (q == NULL || len == 0)
        return 0;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += q[i] == '&';
    struct kv *v = cmx_arena_alloc(a, n * sizeof(*v));
    if (v == NULL)
        return CMX_ENOMEM;
    size_t k = 0, i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && q[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(q + i, '=', j - i);
            size_t kl = eq ? (size_t)(eq - (q + i)) : j - i;
            size_t dl, el;
            const char *dk = pct_decode(a, q + i, kl, &dl);
            if (dk == NULL || (v[k].k = enc_dup(a, dk, dl, &el)) == NULL)
                return CMX_ENOMEM;
            v[k].kl = el;
            const char *vs = eq ? eq + 1 : q + j;
            const char *dv = pct_decode(a, vs, (size_t)(q + j - vs), &dl);
            if (dv == NULL || (v[k].v = enc_dup(a, dv, dl, &el)) == NULL)
                return CMX_ENOMEM;
            v[k].vl = el;
            k++;
        }
        i = j + 1;
    }
    qsort(v, k, sizeof(*v), kv_cmp);
    for (size_t x = 0; x < k; x++) {
        if (x > 0)
            cmx_buf_append(b, "&", 1);
        cmx_buf_append(b, v[x].k, v[x].kl);
        cmx_buf_append(b, "=", 1);
        cmx_buf_append(b, v[x].v, v[x].vl);
    }
    return 0;
}

/* One header to sign: its lower-case name and its value as sent. */
struct hdr {
    const char *name; /* lower case (arena) */
    size_t nl;        /* its length */
    const char *v;    /* value as sent (canonicalised while writing) */
    size_t vl;        /* its length */
    size_t idx;       /* position among the headers, so equal names keep their order */
};

static int hdr_cmp(const void *x, const void *y)
{
    const struct hdr *a = x, *b = y;
    int c = memcmp(a->name, b->name, a->nl < b->nl ? a->nl : b->nl);
    if (c != 0)
        return c;
    if (a->nl != b->nl)
        return a->nl < b->nl ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorts by name, headers of the same name in the order given (a handful: insertion sort). */
static void sort_hdrs(struct hdr *h, size_t n)
{
    if (n > 16) {
        qsort(h, n, sizeof(*h), hdr_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct hdr x = h[i];
        size_t j = i;
        for (; j > 0 && hdr_cmp(&h[j - 1], &x) > 0; j--)
            h[j] = h[j - 1];
        h[j] = x;
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Writes v trimmed, with runs of whitespace collapsed to one space; returns the length
 * (at most n). */
static size_t canon_value(char *w, const char *v, size_t n)
{
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (is_space(v[i])) {
            space = o > 0;
            continue;
        }
        if (space)
            w[o++] = ' ';
        space = false;
        w[o++] = v[i];
    }
    return o;
}

static bool has_header(const struct cmx_sigv4_req *r, const char *name, size_t nl)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].name_len == nl && strncasecmp(r->headers[i].name, name, nl) == 0)
            return true;
    return false;
}

/* Appends one header to h, its name lower-cased into the arena. */
static int add_hdr(struct hdr *h, size_t *n, struct cmx_arena *a, const char *name, size_t nl,
                   const char *val, size_t vl)
{
    if (nl == 0 || nl >= 128)
        return CMX_EINVAL;
    char *lower = cmx_arena_alloc(a, nl + 1);
    if (lower == NULL)
        return CMX_ENOMEM;
    for (size_t i = 0; i < nl; i++) {
        char c = name[i];
        lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lower[nl] = '\0';
    h[*n] = (struct hdr){lower, nl, val, vl, *n};
    (*n)++;
    return 0;
}

/* "Name: value" in the arena. */
static const char *hdr_line(struct cmx_arena *a, const char *prefix, size_t pl, const char *v,
                            size_t vl)
{
    char *s = cmx_arena_alloc(a, pl + vl + 1);
    if (s != NULL) {
        memcpy(s, prefix, pl);
        memcpy(s + pl, v, vl);
        s[pl + vl] = '\0';
    }
    return s;
}

#define PUT(w, s, n) (memcpy((w), (s), (n)), (w) += (n))
#define PUTS(w, lit) PUT(w, lit, sizeof(lit) - 1)

/* X-Amz-Date for now_ms: formatted once per second per thread (no heap). */
struct date_cache {
    uint64_t sec; /* the second it is for */
    char amz[17]; /* YYYYMMDDTHHMMSSZ */
    bool valid;   /* filled */
};
static _Thread_local struct date_cache dcache;

static void amz_date(uint64_t now_ms, char out[17])
{
    struct date_cache *dc = &dcache;
    uint64_t sec = now_ms / 1000;
    if (!dc->valid || dc->sec != sec) {
        char iso[32];
        cmx_clock_format_iso((int64_t)(sec * 1000), iso, sizeof(iso));
        /* iso is YYYY-MM-DDTHH:MM:SSZ */
        static const unsigned char from[15] = {0, 1, 2, 3, 5, 6, 8, 9, 0, 11, 12, 14, 15, 17, 18};
        for (int i = 0; i < 15; i++)
            dc->amz[i] = i == 8 ? 'T' : iso[from[i]];
        dc->amz[15] = 'Z';
        dc->amz[16] = '\0';
        dc->sec = sec;
        dc->valid = true;
    }
    memcpy(out, dc->amz, 17);
}

/* The canonical request and the string to sign are written straight into arena strings
 * sized up front (values only shrink when canonicalised, the path at most triples), so
 * signing allocates nothing on the heap but the digest context. */
int cmx_sigv4_sign(const struct cmx_sigv4_req *r, const struct cmx_sigv4_creds *c,
                   struct cmx_arena *a, struct cmx_sigv4_out *out)
{
    if (c == NULL || c->access_key_id == NULL || c->secret_access_key == NULL ||
        r->region == NULL || r->service == NULL || !has_header(r, "host", 4))
        return CMX_EINVAL;
    memset(out, 0, sizeof(*out));
    amz_date(r->now_ms, out->amz_date);
    char day[9];
    memcpy(day, out->amz_date, 8);
    day[8] = '\0';

    /* the headers to sign: the caller's, then those signing adds */
    struct hdr stack_h[24], *h = stack_h;
    if (r->n_headers + 3 > sizeof(stack_h) / sizeof(stack_h[0]) &&
        (h = cmx_arena_alloc(a, (r->n_headers + 3) * sizeof(*h))) == NULL)
        return CMX_ENOMEM;
    size_t nh = 0;
    int rc = 0;
    for (size_t i = 0; i < r->n_headers && rc == 0; i++)
        rc = add_hdr(h, &nh, a, r->headers[i].name, r->headers[i].name_len, r->headers[i].value,
                     r->headers[i].value_len);
    if (rc != 0)
        return rc;

    sha256_hex(r->payload, r->payload_len, out->payload_hash);
    if (!has_header(r, "x-amz-date", 10)) {
        rc = add_hdr(h, &nh, a, "x-amz-date", 10, out->amz_date, 16);
        out->extra[out->n_extra++] = hdr_line(a, "X-Amz-Date: ", 12, out->amz_date, 16);
    }
    if (rc == 0 && c->session_token != NULL && c->session_token[0] != '\0' &&
        !has_header(r, "x-amz-security-token", 20)) {
        size_t tl = strlen(c->session_token);
        if (!r->omit_token)
            rc = add_hdr(h, &nh, a, "x-amz-security-token", 20, c->session_token, tl);
        out->extra[out->n_extra++] =
            hdr_line(a, "X-Amz-Security-Token: ", 22, c->session_token, tl);
    }
    if (rc == 0 && r->content_sha256 && !has_header(r, "x-amz-content-sha256", 20)) {
        rc = add_hdr(h, &nh, a, "x-amz-content-sha256", 20, out->payload_hash, 64);
        out->extra[out->n_extra++] =
            hdr_line(a, "X-Amz-Content-Sha256: ", 22, out->payload_hash, 64);
    }
    for (size_t i = 0; i < out->n_extra; i++)
        if (out->extra[i] == NULL)
            rc = CMX_ENOMEM;
    if (rc != 0)
        goto out;
    sort_hdrs(h, nh);

    /* 1. canonical request */
    const char *path = r->path_len ? r->path : "/";
    size_t plen = r->path_len ? r->path_len : 1;
    if (r->normalize_path && (rc = normalize(a, path, plen, &path, &plen)) != 0)
        goto out;
    struct cmx_buf q;
    cmx_buf_init(&q, 4u << 20);
    if ((rc = canonical_query(a, r->query, r->query_len, &q)) != 0) {
        cmx_buf_free(&q);
        goto out;
    }
    size_t ml = strlen(r->method);
    size_t cap = ml + 1 + plen * 3 + 1 + q.len + 2 + 1 + 64 + 1;
    size_t distinct = 0;
    for (size_t i = 0; i < nh; i++) {
        cap += 2 * h[i].nl + h[i].vl + 3;
        distinct += i == 0 || h[i].nl != h[i - 1].nl || memcmp(h[i].name, h[i - 1].name, h[i].nl);
    }
    char *cq = distinct <= MAX_SIGNED && cap <= (4u << 20) ? cmx_arena_alloc(a, cap) : NULL;
    if (cq == NULL) {
        rc = distinct > MAX_SIGNED ? CMX_EINVAL : CMX_ENOMEM;
        cmx_buf_free(&q);
        goto out;
    }
    char *w = cq;
    PUT(w, r->method, ml);
    *w++ = '\n';
    if (r->no_double_encode)
        PUT(w, path, plen);
    else
        w += enc_to(w, path, plen, true);
    *w++ = '\n';
    if (q.len > 0)
        PUT(w, q.data, q.len);
    cmx_buf_free(&q);
    *w++ = '\n';
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && h[i].nl == h[i - 1].nl && memcmp(h[i].name, h[i - 1].name, h[i].nl) == 0) {
            w[-1] = ','; /* the same header again: values joined with ',' */
        } else {
            PUT(w, h[i].name, h[i].nl);
            *w++ = ':';
        }
        w += canon_value(w, h[i].v, h[i].vl);
        *w++ = '\n';
    }
    *w++ = '\n';
    const char *signed_list = w;
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && h[i].nl == h[i - 1].nl && memcmp(h[i].name, h[i - 1].name, h[i].nl) == 0)
            continue;
        if (w > signed_list)
            *w++ = ';';
        PUT(w, h[i].name, h[i].nl);
    }
    size_t signed_len = (size_t)(w - signed_list);
    *w++ = '\n';
    PUT(w, out->payload_hash, 64);
    *w = '\0';
    size_t creq_len = (size_t)(w - cq);
    out->canonical_request = cq;

    /* 2. string to sign: algorithm, date, scope, hash of the canonical request */
    size_t rl = strlen(r->region), svl = strlen(r->service);
    size_t scope_len = 8 + 1 + rl + 1 + svl + 13;
    char *sts = cmx_arena_alloc(a, 17 + 16 + 1 + scope_len + 1 + 64 + 1);
    if (sts == NULL) {
        rc = CMX_ENOMEM;
        goto out;
    }
    w = sts;
    PUTS(w, "AWS4-HMAC-SHA256\n");
    PUT(w, out->amz_date, 16);
    *w++ = '\n';
    const char *scope = w;
    PUT(w, day, 8);
    *w++ = '/';
    PUT(w, r->region, rl);
    *w++ = '/';
    PUT(w, r->service, svl);
    PUTS(w, "/aws4_request");
    *w++ = '\n';
    sha256_hex(cq, creq_len, w);
    w += 64;
    out->string_to_sign = sts;

    /* 3. signing key and signature */
    struct hmac_key tmp;
    unsigned char sig[32];
    hmac_with(signing_key(c->secret_access_key, day, r->region, r->service, &tmp), sts,
              (size_t)(w - sts), sig);
    OPENSSL_cleanse(&tmp, sizeof(tmp));
    cmx_hex_encode(sig, 32, out->signature);

    size_t akl = strlen(c->access_key_id);
    char *auth = cmx_arena_alloc(a, 28 + akl + 1 + scope_len + 16 + signed_len + 12 + 64 + 1);
    if (auth == NULL) {
        rc = CMX_ENOMEM;
        goto out;
    }
    w = auth;
    PUTS(w, "AWS4-HMAC-SHA256 Credential=");
    PUT(w, c->access_key_id, akl);
    *w++ = '/';
    PUT(w, scope, scope_len);
    PUTS(w, ", SignedHeaders=");
    PUT(w, signed_list, signed_len);
    PUTS(w, ", Signature=");
    PUT(w, out->signature, 64);
    *w = '\0';
    out->authorization = auth;
out:
    return rc;
}
