/* In-process limits backend: one table per process, shared by every worker thread.
 *
 * The table is split into STRIPES independent hash tables, each behind its own mutex, so
 * workers rarely meet. A take locks the stripes of its buckets in ascending order (no
 * deadlock), checks every bucket, charges all or none, and unlocks: the critical section
 * is a few hash lookups and integer operations. A bucket that has drained to empty is the
 * same as an absent one, so a stripe sweeps such entries whenever it has doubled since its
 * last sweep: memory stays proportional to the buckets used within one period.
 * Callbacks run synchronously, before cmx_limits_take() returns. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/hash.h"
#include "limits/limits.h"

#define STRIPES     64
#define MIN_SLOTS   16
#define SWEEP_FLOOR 64

struct entry {
    struct entry *next; /* chain in the slot */
    uint64_t hash;      /* of key, limit, period */
    int64_t limit;      /* bucket identity, with key */
    int64_t period_us;  /* bucket identity, with key */
    int64_t level;      /* GCRA level at t_us */
    int64_t t_us;       /* when level was computed */
    int64_t rate;       /* drain per us, for the sweep (0: a quota) */
    int64_t expires_us; /* a quota: dropped from then on */
    uint16_t key_len;   /* bytes of key */
    char key[];         /* not NUL-terminated */
};

struct stripe {
    uv_mutex_t mu;        /* guards the rest */
    struct entry **slots; /* n_slots chains */
    size_t n_slots;       /* power of two */
    size_t n;             /* entries */
    size_t sweep_at;      /* sweep when n reaches this */
    int64_t swept_us;     /* time of the last sweep (a full stripe sweeps at most 1/ms) */
} __attribute__((aligned(64)));

struct mem {
    struct stripe stripes[STRIPES]; /* the table */
    size_t stripe_cap;              /* entries per stripe at most */
    int64_t (*clock_us)(void *);    /* time source */
    void *clock_ud;                 /* its argument */
};

static int64_t mono_us(void *ud)
{
    struct timespec ts;
    (void)ud;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t hash_bucket(const char *key, size_t len, int64_t limit, int64_t period)
{
    uint64_t h = cmx_fnv1a(CMX_FNV1A_INIT, key, len);
    h ^= (uint64_t)limit * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)period * 0xc2b2ae3d27d4eb4full;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static int mem_init(struct cmx_limits *l)
{
    const struct cmx_limits_config *cfg = cmx_limits_config_of(l);
    struct mem *m = calloc(1, sizeof(*m));
    size_t i;
    if (m == NULL)
        return CMX_ENOMEM;
    m->stripe_cap = cfg->max_entries / STRIPES;
    if (m->stripe_cap < SWEEP_FLOOR)
        m->stripe_cap = SWEEP_FLOOR;
    m->clock_us = cfg->clock_us != NULL ? cfg->clock_us : mono_us;
    m->clock_ud = cfg->clock_ud;
    for (i = 0; i < STRIPES; i++) {
        struct stripe *s = &m->stripes[i];
        s->slots = calloc(MIN_SLOTS, sizeof(*s->slots));
        s->n_slots = MIN_SLOTS;
        s->sweep_at = SWEEP_FLOOR;
        if (s->slots == NULL || uv_mutex_init(&s->mu) != 0) {
            free(s->slots);
            goto out_undo;
        }
    }
    cmx_limits_set_impl(l, m);
    return 0;
out_undo:
    while (i-- > 0) {
        uv_mutex_destroy(&m->stripes[i].mu);
        free(m->stripes[i].slots);
    }
    free(m);
    return CMX_ENOMEM;
}

static void mem_fini(struct cmx_limits *l)
{
    struct mem *m = cmx_limits_impl(l);
    if (m == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        struct stripe *s = &m->stripes[i];
        for (size_t j = 0; j < s->n_slots; j++) {
            struct entry *e = s->slots[j], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(s->slots);
        uv_mutex_destroy(&s->mu);
    }
    free(m);
    cmx_limits_set_impl(l, NULL);
}

static int mem_client_new(struct cmx_limits *l, uv_loop_t *loop, struct cmx_limits_client **out)
{
    struct cmx_limits_client *c = calloc(1, sizeof(*c));
    (void)loop;
    if (c == NULL)
        return CMX_ENOMEM;
    c->l = l;
    cmx_limits_client_register(c);
    *out = c;
    return 0;
}

static void mem_client_close(struct cmx_limits_client *c)
{
    cmx_limits_client_unregister(c);
    free(c);
}

static struct entry *find(struct stripe *s, uint64_t h, const char *key, size_t len,
                          const struct cmx_limits_item *it)
{
    struct entry *e = s->slots[(h >> 6) & (s->n_slots - 1)];
    for (; e != NULL; e = e->next) {
        if (e->hash == h && e->key_len == len && e->limit == it->id_limit &&
            e->period_us == it->period_us && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

/* Drops entries that have drained to empty (identical to absent ones). */
static void sweep(struct stripe *s, int64_t now)
{
    for (size_t j = 0; j < s->n_slots; j++) {
        struct entry **pp = &s->slots[j];
        while (*pp != NULL) {
            struct entry *e = *pp;
            int64_t el = now - e->t_us;
            bool gone = e->rate == 0
                            ? now >= e->expires_us
                            : e->level <= 0 || (el > 0 && el >= (e->level - 1) / e->rate + 1);
            if (gone) {
                *pp = e->next;
                free(e);
                s->n--;
            } else {
                pp = &e->next;
            }
        }
    }
    s->sweep_at = s->n * 2 > SWEEP_FLOOR ? s->n * 2 : SWEEP_FLOOR;
    s->swept_us = now;
}

static void grow(struct stripe *s)
{
    size_t nn = s->n_slots * 2;
    struct entry **ns = calloc(nn, sizeof(*ns));
    if (ns == NULL)
        return; /* longer chains, still correct */
    for (size_t j = 0; j < s->n_slots; j++) {
        struct entry *e = s->slots[j], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            struct entry **slot = &ns[(e->hash >> 6) & (nn - 1)];
            e->next = *slot;
            *slot = e;
        }
    }
    free(s->slots);
    s->slots = ns;
    s->n_slots = nn;
}

/* A new, empty entry for bucket i in s, or NULL (stripe full of live buckets, no memory).
 * Moves chains but never frees an entry. */
static struct entry *insert(struct stripe *s, size_t cap, uint64_t h, const char *key, size_t len,
                            const struct cmx_limits_item *it, int64_t now)
{
    if (s->n >= cap)
        return NULL;
    struct entry *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return NULL;
    if (s->n >= s->n_slots)
        grow(s);
    e->hash = h;
    e->limit = it->id_limit;
    e->period_us = it->period_us;
    e->rate = it->rate;
    e->expires_us = now + it->ttl_us;
    e->key_len = (uint16_t)len;
    memcpy(e->key, key, len);
    e->level = 0;
    e->t_us = now;
    struct entry **slot = &s->slots[(h >> 6) & (s->n_slots - 1)];
    e->next = *slot;
    *slot = e;
    s->n++;
    return e;
}

static int mem_run(struct cmx_limits_client *c, const struct cmx_limits_req *req, cmx_limits_cb cb,
                   void *ud)
{
    struct mem *m = cmx_limits_impl(c->l);
    uint64_t h[CMX_LIMITS_MAX_BUCKETS];
    unsigned idx[CMX_LIMITS_MAX_BUCKETS], order[CMX_LIMITS_MAX_BUCKETS];
    struct entry *e[CMX_LIMITS_MAX_BUCKETS];
    int64_t level[CMX_LIMITS_MAX_BUCKETS], next[CMX_LIMITS_MAX_BUCKETS];
    size_t n = req->n, n_locks = 0;
    bool ok = true, nomem = false;
    int64_t now;

    for (size_t i = 0; i < n; i++) {
        h[i] = hash_bucket(req->keys[i], req->key_lens[i], req->items[i].id_limit,
                           req->items[i].period_us);
        idx[i] = (unsigned)(h[i] % STRIPES);
    }
    /* distinct stripes in ascending order: every thread locks in the same order */
    for (size_t i = 0; i < n; i++) {
        size_t j = n_locks;
        bool dup = false;
        for (size_t k = 0; k < n_locks; k++)
            dup |= order[k] == idx[i];
        if (dup)
            continue;
        while (j > 0 && order[j - 1] > idx[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = idx[i];
        n_locks++;
    }
    for (size_t k = 0; k < n_locks; k++)
        uv_mutex_lock(&m->stripes[order[k]].mu);
    /* read under the locks, so that a stripe's times only move forward */
    now = m->clock_us(m->clock_ud);
    /* sweep before looking anything up: a sweep frees entries */
    for (size_t k = 0; k < n_locks; k++) {
        struct stripe *s = &m->stripes[order[k]];
        if ((s->n >= s->sweep_at && s->n < m->stripe_cap) ||
            (s->n >= m->stripe_cap && now - s->swept_us >= 1000))
            sweep(s, now);
    }

    for (size_t i = 0; i < n; i++) {
        const struct cmx_limits_item *it = &req->items[i];
        e[i] = find(&m->stripes[idx[i]], h[i], req->keys[i], req->key_lens[i], it);
        if (e[i] != NULL && it->rate == 0 && now >= e[i]->expires_us)
            e[i]->level = it->init; /* an expired quota not swept yet: as if absent */
        level[i] =
            e[i] != NULL ? cmx_limits_gcra_drain(it, e[i]->level, now - e[i]->t_us) : it->init;
        if (req->settle)
            next[i] = cmx_limits_gcra_add(it, level[i], it->cost);
        else if (cmx_limits_gcra_fits(it, level[i], it->cost))
            next[i] = level[i] + it->cost * it->unit_level;
        else
            ok = false;
    }
    if (ok) {
        /* make every missing entry first, so that a full table charges nothing */
        for (size_t i = 0; i < n && !nomem; i++) {
            if (e[i] != NULL || (next[i] == 0 && req->items[i].rate != 0))
                continue;
            e[i] = insert(&m->stripes[idx[i]], m->stripe_cap, h[i], req->keys[i], req->key_lens[i],
                          &req->items[i], now);
            nomem = e[i] == NULL;
        }
        /* on failure the entries just made stay empty: the same as absent, swept later */
        for (size_t i = 0; i < n && !nomem; i++) {
            if (e[i] == NULL)
                continue; /* stays empty */
            if (now > e[i]->t_us)
                e[i]->t_us = now;
            e[i]->level = next[i];
            if (req->items[i].rate == 0)
                e[i]->expires_us = now + req->items[i].ttl_us;
        }
    }
    for (size_t k = n_locks; k-- > 0;)
        uv_mutex_unlock(&m->stripes[order[k]].mu);

    if (nomem) {
        cmx_limits_complete_error(c, req->settle, CMX_ENOMEM, cb, ud);
        return 0;
    }
    cmx_limits_complete(c, req, ok, ok ? next : level, cb, ud);
    return 0;
}

const struct cmx_limits_ops cmx_limits_memory_ops = {
    .name = "memory",
    .init = mem_init,
    .fini = mem_fini,
    .client_new = mem_client_new,
    .client_close = mem_client_close,
    .run = mem_run,
};
