/* Redis limits backend: every instance shares exact counters through one atomic Lua script.
 *
 * One hiredis (0.14, async API) connection per worker, attached to the worker's libuv loop.
 * A take or settle is one EVALSHA (EVAL when Redis answers NOSCRIPT) of SCRIPT below: it
 * reads Redis's own clock (TIME), drains every bucket, checks them all, and charges all or
 * none -- atomically, since Redis runs a script alone -- so any number of gateways see one
 * set of counters and their own clocks never matter. Buckets are hashes {l: level,
 * t: time in us} that expire once drained (a drained bucket equals an absent one).
 *
 * Failures: a reply later than timeout_ms drops the connection (every pending take is
 * answered by the on_error policy); a dropped connection reconnects after a backoff that
 * doubles from backoff_min_ms to backoff_max_ms. While there is no connection, takes are
 * answered at once (synchronously) by the policy; while connecting they wait in hiredis's
 * queue (bounded by the same timeout). Redis Cluster is not supported (the script touches
 * several keys). */
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/err.h"
#include "core/log.h"
#include "limits/limits.h"

/* ARGV[1] = "t" (take) or "s" (settle); then per bucket i (1-based), at 2 + 6(i-1):
 * unit_level, rate, capacity, cost, init, ttl_ms. Returns {ok, now_us, level_1, ...,
 * level_n}: levels after the charge when ok, else the current uncharged ones. A bucket with
 * rate 0 is a quota: it never drains, starts at init when absent, and expires ttl_ms after
 * its last change. Lua 5.1 numbers are doubles: every value stays below 2^53 (capacity <=
 * 2^51, level <= 2^52), so they are exact, and numbers are written back with %d so that no
 * exponent form ever reaches Redis. */
static const char SCRIPT[] =
    "local n = #KEYS\n"
    "local settle = ARGV[1] == 's'\n"
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n"
    "local maxl = 4503599627370496\n"
    "local ok = 1\n"
    "local cur, nxt, tat = {}, {}, {}\n"
    "for i = 1, n do\n"
    "  local a = 2 + (i - 1) * 6\n"
    "  local u, rate = tonumber(ARGV[a]), tonumber(ARGV[a + 1])\n"
    "  local cap, cost = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])\n"
    "  local h = redis.call('HMGET', KEYS[i], 'l', 't')\n"
    "  local l = tonumber(h[1]) or tonumber(ARGV[a + 4])\n"
    "  local t = tonumber(h[2]) or now\n"
    "  if now > t then\n"
    "    if rate > 0 then\n"
    "      local d = (now - t) * rate\n"
    "      if d >= l then l = 0 else l = l - d end\n"
    "    end\n"
    "    t = now\n"
    "  end\n"
    "  local x = l + cost * u\n"
    "  if settle then\n"
    "    if x < 0 then x = 0 elseif x > maxl then x = maxl end\n"
    "  elseif x > cap then\n"
    "    ok = 0\n"
    "  end\n"
    "  cur[i] = l\n"
    "  nxt[i] = x\n"
    "  tat[i] = t\n"
    "end\n"
    "local out = {ok, now}\n"
    "for i = 1, n do\n"
    "  if ok == 1 then\n"
    "    local x = nxt[i]\n"
    "    local a = 2 + (i - 1) * 6\n"
    "    local rate = tonumber(ARGV[a + 1])\n"
    "    if rate == 0 then\n"
    "      redis.call('HSET', KEYS[i], 'l', string.format('%d', x), 't', string.format('%d', "
    "tat[i]))\n"
    "      redis.call('PEXPIRE', KEYS[i], ARGV[a + 5])\n"
    "    elseif x <= 0 then\n"
    "      redis.call('DEL', KEYS[i])\n"
    "    else\n"
    "      redis.call('HSET', KEYS[i], 'l', string.format('%d', x), 't', string.format('%d', "
    "tat[i]))\n"
    "      redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(x / rate / 1000) + 2))\n"
    "    end\n"
    "    out[i + 2] = x\n"
    "  else\n"
    "    out[i + 2] = cur[i]\n"
    "  end\n"
    "end\n"
    "return out\n";

#define KEYBUF  (sizeof(((struct cmx_limits_config *)0)->key_prefix) + CMX_LIMITS_KEY_MAX + 48)
#define NUMBUF  24
#define MAXARGS (4 + CMX_LIMITS_MAX_BUCKETS * 7)

struct rlim {
    char sha[41];                       /* SHA-1 of SCRIPT, hex */
    char addr[CMX_LIMITS_HOST_MAX + 1]; /* host resolved once at start (or the name) */
};

struct rclient {
    struct cmx_limits_client base; /* first: the shared part */
    uv_loop_t *loop;               /* the worker's loop */
    struct rlim *rl;               /* the limiter's backend state */
    const struct cmx_limits_config *cfg;
    redisAsyncContext *ac;       /* NULL while waiting to reconnect */
    bool connected;              /* ac finished connecting */
    bool was_up;                 /* for logging transitions once */
    bool closing;                /* client_close ran */
    int fail_reason;             /* error given to replies lost with the connection */
    int backoff_ms;              /* next reconnect delay */
    uint64_t connect_deadline;   /* uv_now() by which a connect must finish */
    uv_timer_t retry;            /* reconnect backoff */
    uv_timer_t deadline;         /* reply / connect timeouts */
    int open_handles;            /* timers not yet closed */
    struct pending *head, *tail; /* in-flight, oldest first */
};

struct pending {
    struct pending *prev, *next; /* in the client's list */
    struct rclient *c;           /* owner */
    cmx_limits_cb cb;            /* NULL for settles */
    void *ud;                    /* cb's argument */
    uint64_t deadline;           /* uv_now() by which the reply is due */
    bool retried;                /* EVAL after NOSCRIPT was sent */
    struct cmx_limits_req req;   /* keys point into keybuf */
    int argc;                    /* used argv entries */
    const char *argv[MAXARGS];   /* EVALSHA sha numkeys keys... mode args... */
    size_t argvlen[MAXARGS];
    char keybuf[CMX_LIMITS_MAX_BUCKETS][KEYBUF];
    char num[MAXARGS][NUMBUF];
};

static void schedule_reconnect(struct rclient *c);
static void arm_deadline(struct rclient *c);

static int rl_init(struct cmx_limits *l)
{
    const struct cmx_limits_config *cfg = cmx_limits_config_of(l);
    struct rlim *rl = calloc(1, sizeof(*rl));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (rl == NULL)
        return CMX_ENOMEM;
    if (cfg->host[0] == '\0' || cfg->port < 1 || cfg->port > 65535) {
        free(rl);
        return CMX_EINVAL;
    }
    if (!EVP_Digest(SCRIPT, sizeof(SCRIPT) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        free(rl);
        return CMX_EINTERNAL;
    }
    for (unsigned i = 0; i < 20; i++)
        snprintf(rl->sha + 2 * i, 3, "%02x", md[i]);
    /* hiredis resolves names with a blocking getaddrinfo on every connect: do it once here,
     * on the main thread, and keep the name if that fails (tried again per connect) */
    snprintf(rl->addr, sizeof(rl->addr), "%s", cfg->host);
    /* IPv4 first, as hiredis itself does ("localhost" -> 127.0.0.1, where Redis listens) */
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(cfg->host, NULL, &hints, &res) != 0) {
        res = NULL;
        hints.ai_family = AF_UNSPEC;
        if (getaddrinfo(cfg->host, NULL, &hints, &res) != 0)
            res = NULL;
    }
    if (res != NULL) {
        char buf[NI_MAXHOST];
        if (getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof(buf), NULL, 0, NI_NUMERICHOST) ==
                0 &&
            strlen(buf) < sizeof(rl->addr))
            memcpy(rl->addr, buf, strlen(buf) + 1);
        freeaddrinfo(res);
    }
    cmx_limits_set_impl(l, rl);
    return 0;
}

static void rl_fini(struct cmx_limits *l)
{
    free(cmx_limits_impl(l));
    cmx_limits_set_impl(l, NULL);
}

static void set_up(struct rclient *c, bool up, const char *why)
{
    cmx_limits_set_reachable(c->base.l, up);
    if (up == c->was_up)
        return;
    c->was_up = up;
    if (up)
        cmx_log(CMX_LOG_INFO, "limits: redis %s:%d reachable", c->cfg->host, c->cfg->port);
    else
        cmx_log(CMX_LOG_WARN, "limits: redis %s:%d unreachable (%s); on_error %s applies",
                c->cfg->host, c->cfg->port, why != NULL ? why : "error",
                c->cfg->on_error == CMX_LIMITS_FAIL_OPEN ? "fail_open" : "fail_closed");
}

static void unlink_pending(struct pending *p)
{
    struct rclient *c = p->c;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        c->head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    else
        c->tail = p->prev;
    p->prev = p->next = NULL;
}

static void fail_pending(struct pending *p, int err)
{
    struct rclient *c = p->c;
    unlink_pending(p);
    cmx_limits_complete_error(&c->base, p->req.settle, err, p->cb, p->ud);
    free(p);
}

/* Forgets the connection (its pending replies fail with reason) and plans a reconnect. */
static void drop(struct rclient *c, int reason, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    c->ac = NULL;
    c->connected = false;
    c->fail_reason = reason;
    if (!c->closing)
        set_up(c, false, why);
    /* runs every pending callback with a NULL reply (now, or after the current callback) */
    redisAsyncFree(ac);
    schedule_reconnect(c);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata);

static int send_pending(struct rclient *c, struct pending *p)
{
    if (redisAsyncCommandArgv(c->ac, reply_cb, p, p->argc, p->argv, p->argvlen) != REDIS_OK)
        return CMX_ECONNECT;
    return 0;
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct pending *p = privdata;
    struct rclient *c = p->c;
    redisReply *reply = r;
    int64_t levels[CMX_LIMITS_MAX_BUCKETS];

    (void)ac;
    if (reply == NULL) {
        fail_pending(p, c->fail_reason != 0 ? c->fail_reason : CMX_ECONNECT);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!p->retried && reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0 &&
            c->ac != NULL) {
            /* the script cache was flushed or this is a fresh Redis: send the text once */
            p->retried = true;
            p->argv[0] = "EVAL";
            p->argvlen[0] = 4;
            p->argv[1] = SCRIPT;
            p->argvlen[1] = sizeof(SCRIPT) - 1;
            if (send_pending(c, p) == 0)
                return;
        } else {
            cmx_log(CMX_LOG_WARN, "limits: redis error reply: %.120s", reply->str);
        }
        fail_pending(p, CMX_EUPSTREAM);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != p->req.n + 2) {
        fail_pending(p, CMX_EUPSTREAM);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
            fail_pending(p, CMX_EUPSTREAM);
            return;
        }
    }
    for (size_t i = 0; i < p->req.n; i++)
        levels[i] = reply->element[i + 2]->integer;
    set_up(c, true, NULL);
    unlink_pending(p);
    cmx_limits_complete(&c->base, &p->req, reply->element[0]->integer == 1, levels, p->cb, p->ud);
    free(p);
}

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rclient *c = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (reply == NULL || c == NULL || c->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* never echo the command: it may hold the password */
        cmx_log(CMX_LOG_ERROR, "limits: redis refused %s: %.80s",
                privdata == (void *)1 ? "AUTH" : "SELECT", reply->str);
        drop(c, CMX_ECONNECT, "setup refused");
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rclient *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns, failing what was queued */
        c->ac = NULL;
        c->connected = false;
        c->fail_reason = CMX_ECONNECT;
        if (!c->closing) {
            set_up(c, false, ac->errstr);
            schedule_reconnect(c);
        }
        return;
    }
    c->connected = true;
    c->backoff_ms = c->cfg->backoff_min_ms;
    set_up(c, true, NULL);
    arm_deadline(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rclient *c = ac->data;
    if (c == NULL || c->ac != ac)
        return; /* we dropped it ourselves */
    c->ac = NULL;
    c->connected = false;
    if (!c->closing) {
        set_up(c, false, status == REDIS_OK ? "closed" : ac->errstr);
        schedule_reconnect(c);
    }
}

static void connect_now(struct rclient *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->rl->addr, c->cfg->port);

    if (ac == NULL) {
        schedule_reconnect(c);
        return;
    }
    if (ac->err != 0) {
        set_up(c, false, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->connected = false;
    c->fail_reason = 0;
    c->connect_deadline = uv_now(c->loop) + (uint64_t)c->cfg->timeout_ms;
    /* queued now, written once connected, ahead of any take */
    if (c->cfg->password[0] != '\0') {
        const char *argv[3] = {"AUTH", c->cfg->user, c->cfg->password};
        size_t lens[3] = {4, strlen(c->cfg->user), strlen(c->cfg->password)};
        if (c->cfg->user[0] != '\0')
            redisAsyncCommandArgv(ac, setup_cb, (void *)1, 3, argv, lens);
        else
            redisAsyncCommandArgv(ac, setup_cb, (void *)1, 2, (const char *[]){"AUTH", argv[2]},
                                  (size_t[]){4, lens[2]});
    }
    if (c->cfg->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->cfg->db);
        redisAsyncCommand(ac, setup_cb, (void *)2, "SELECT %s", db);
    }
    arm_deadline(c);
}

static void retry_cb(uv_timer_t *t)
{
    struct rclient *c = t->data;
    if (!c->closing && c->ac == NULL)
        connect_now(c);
}

static void schedule_reconnect(struct rclient *c)
{
    if (c->closing || uv_is_active((uv_handle_t *)&c->retry))
        return;
    uv_timer_start(&c->retry, retry_cb, (uint64_t)c->backoff_ms, 0);
    c->backoff_ms =
        c->backoff_ms * 2 > c->cfg->backoff_max_ms ? c->cfg->backoff_max_ms : c->backoff_ms * 2;
}

/* The earliest of: the oldest pending reply's deadline, the connect deadline. */
static void deadline_cb(uv_timer_t *t)
{
    struct rclient *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (c->closing || c->ac == NULL)
        return;
    if (!c->connected && now >= c->connect_deadline) {
        drop(c, CMX_ETIMEOUT, "connect timed out");
        return;
    }
    if (c->head != NULL && now >= c->head->deadline) {
        drop(c, CMX_ETIMEOUT, "reply timed out");
        return;
    }
    arm_deadline(c);
}

static void arm_deadline(struct rclient *c)
{
    uint64_t now = uv_now(c->loop), when = UINT64_MAX;
    if (c->closing || c->ac == NULL)
        return;
    if (!c->connected)
        when = c->connect_deadline;
    if (c->head != NULL && c->head->deadline < when)
        when = c->head->deadline;
    if (when == UINT64_MAX) {
        uv_timer_stop(&c->deadline);
        return;
    }
    uv_timer_start(&c->deadline, deadline_cb, when > now ? when - now : 0, 0);
}

static int rl_client_new(struct cmx_limits *l, uv_loop_t *loop, struct cmx_limits_client **out)
{
    struct rclient *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CMX_ENOMEM;
    c->base.l = l;
    c->loop = loop;
    c->rl = cmx_limits_impl(l);
    c->cfg = cmx_limits_config_of(l);
    c->backoff_ms = c->cfg->backoff_min_ms;
    c->was_up = true; /* so that a first failure is logged */
    uv_timer_init(loop, &c->retry);
    uv_timer_init(loop, &c->deadline);
    c->retry.data = c;
    c->deadline.data = c;
    c->open_handles = 2;
    cmx_limits_client_register(&c->base);
    connect_now(c);
    *out = &c->base;
    return 0;
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct rclient *c = h->data;
    if (--c->open_handles == 0) {
        cmx_limits_client_unregister(&c->base);
        free(c);
    }
}

static void rl_client_close(struct cmx_limits_client *base)
{
    struct rclient *c = (struct rclient *)base;
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->retry);
    uv_timer_stop(&c->deadline);
    if (c->ac != NULL) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->fail_reason = CMX_ECANCELED;
        redisAsyncFree(ac);
    }
    /* every pending take is owned by hiredis: it answers them with NULL replies, now or
     * (when this runs inside a hiredis callback) as soon as that callback returns -- before
     * the loop runs again, so before the timers' close callbacks free c */
    uv_close((uv_handle_t *)&c->retry, timer_closed_cb);
    uv_close((uv_handle_t *)&c->deadline, timer_closed_cb);
}

static void put_num(struct pending *p, int64_t v)
{
    int len = snprintf(p->num[p->argc], NUMBUF, "%" PRId64, v);
    p->argv[p->argc] = p->num[p->argc];
    p->argvlen[p->argc] = (size_t)len;
    p->argc++;
}

static int rl_run(struct cmx_limits_client *base, const struct cmx_limits_req *req,
                  cmx_limits_cb cb, void *ud)
{
    struct rclient *c = (struct rclient *)base;
    struct pending *p;

    if (c->closing || c->ac == NULL) {
        /* no connection: the policy answers now */
        cmx_limits_complete_error(base, req->settle, c->closing ? CMX_ECANCELED : CMX_ECONNECT, cb,
                                  ud);
        return 0;
    }
    p = malloc(sizeof(*p));
    if (p == NULL)
        return CMX_ENOMEM;
    p->prev = p->next = NULL;
    p->c = c;
    p->cb = cb;
    p->ud = ud;
    p->retried = false;
    p->req = *req;
    p->argc = 0;
    p->argv[p->argc] = "EVALSHA";
    p->argvlen[p->argc++] = 7;
    p->argv[p->argc] = c->rl->sha;
    p->argvlen[p->argc++] = 40;
    put_num(p, (int64_t)req->n);
    for (size_t i = 0; i < req->n; i++) {
        const struct cmx_limits_item *it = &req->items[i];
        int len = snprintf(p->keybuf[i], KEYBUF, "%s%.*s:%" PRId64 ":%" PRId64, c->cfg->key_prefix,
                           (int)req->key_lens[i], req->keys[i], it->id_limit, it->period_us);
        p->req.keys[i] = p->keybuf[i];
        p->req.key_lens[i] = (size_t)len;
        p->argv[p->argc] = p->keybuf[i];
        p->argvlen[p->argc++] = (size_t)len;
    }
    p->argv[p->argc] = req->settle ? "s" : "t";
    p->argvlen[p->argc++] = 1;
    for (size_t i = 0; i < req->n; i++) {
        const struct cmx_limits_item *it = &req->items[i];
        put_num(p, it->unit_level);
        put_num(p, it->rate);
        put_num(p, it->capacity);
        put_num(p, it->cost);
        put_num(p, it->init);
        put_num(p, it->rate == 0 ? (it->ttl_us + 999) / 1000 : 0);
    }
    p->deadline = uv_now(c->loop) + (uint64_t)c->cfg->timeout_ms;
    /* link first: a failing send completes through reply_cb or below */
    p->prev = c->tail;
    if (c->tail != NULL)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    if (send_pending(c, p) != 0) {
        fail_pending(p, CMX_ECONNECT);
        return 0;
    }
    if (!uv_is_active((uv_handle_t *)&c->deadline))
        arm_deadline(c);
    return 0;
}

const struct cmx_limits_ops cmx_limits_redis_ops = {
    .name = "redis",
    .init = rl_init,
    .fini = rl_fini,
    .client_new = rl_client_new,
    .client_close = rl_client_close,
    .run = rl_run,
};
