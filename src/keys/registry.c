/* Key snapshots (see registry.h). The current set is swapped under a tiny mutex: workers
 * take it once per request, which costs far less than the request. */
#include "keys/registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Sort entries: the record and its position in the caller's array (later wins). */
struct entry {
    const struct cmx_key_rec *rec;
    size_t pos;
};

static int by_hash_then_pos(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = memcmp(x->rec->hash, y->rec->hash, CMX_KEY_HASH_HEX);
    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

struct cmx_key_set *cmx_key_set_new(const struct cmx_key_rec *recs, size_t n)
{
    struct cmx_key_set *s = calloc(1, sizeof(*s));
    struct entry *e = malloc((n ? n : 1) * sizeof(*e));
    if (s == NULL || e == NULL || (s->recs = malloc((n ? n : 1) * sizeof(*recs))) == NULL) {
        free(e);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        e[i] = (struct entry){&recs[i], i};
    qsort(e, n, sizeof(*e), by_hash_then_pos);
    for (size_t i = 0; i < n; i++) {
        /* of a run of equal hashes, keep the last one given */
        if (i + 1 < n && memcmp(e[i].rec->hash, e[i + 1].rec->hash, CMX_KEY_HASH_HEX) == 0)
            continue;
        s->recs[s->n] = *e[i].rec;
        s->recs[s->n].hash[CMX_KEY_HASH_HEX] = '\0';
        s->n++;
    }
    free(e);
    atomic_init(&s->refcount, 1);
    return s;
}

struct cmx_key_set *cmx_key_set_ref(struct cmx_key_set *s)
{
    if (s != NULL)
        atomic_fetch_add(&s->refcount, 1);
    return s;
}

void cmx_key_set_unref(struct cmx_key_set *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refcount, 1) != 1)
        return;
    free(s->recs);
    free(s);
}

enum cmx_key_verdict cmx_key_set_check(const struct cmx_key_set *s, const char *key, size_t len,
                                       int64_t now_ms, const struct cmx_key_rec **rec)
{
    char h[CMX_KEY_HASH_HEX + 1];

    *rec = NULL;
    if (s == NULL || s->n == 0 || !cmx_key_well_formed(key, len))
        return CMX_KEY_UNKNOWN;
    cmx_key_hash(key, len, h);
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(s->recs[mid].hash, h, CMX_KEY_HASH_HEX);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->n || !cmx_key_equal(s->recs[lo].hash, h, CMX_KEY_HASH_HEX))
        return CMX_KEY_UNKNOWN;
    *rec = &s->recs[lo];
    if ((*rec)->revoked_ms >= 0)
        return CMX_KEY_REVOKED;
    if ((*rec)->expires_ms >= 0 && now_ms >= (*rec)->expires_ms)
        return CMX_KEY_EXPIRED;
    return CMX_KEY_OK;
}

static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cmx_key_set *current;

void cmx_keys_publish(struct cmx_key_set *s)
{
    pthread_mutex_lock(&current_mu);
    struct cmx_key_set *old = current;
    current = s;
    pthread_mutex_unlock(&current_mu);
    cmx_key_set_unref(old);
}

struct cmx_key_set *cmx_keys_acquire(void)
{
    pthread_mutex_lock(&current_mu);
    struct cmx_key_set *s = cmx_key_set_ref(current);
    pthread_mutex_unlock(&current_mu);
    return s;
}
