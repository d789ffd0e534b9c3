/* Service-account access tokens: see gcp_token.h for the policy. */
#include "auth/gcp_token.h"
#include "auth/jws.h"
#include "core/err.h"
#include "core/log.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#define REFRESH_MARGIN_MS (300u * 1000u) /* refresh 5 minutes before expiry */
#define MIN_LEFT_MS       (10u * 1000u)  /* a token this close to expiry is not used */
#define STALE_REFRESH_MS  (30u * 1000u)  /* an exchange silent that long may be replaced */
#define MAX_TOKEN_BODY    (64u << 10)
#define RECHECK_MS        (60u * 1000u) /* how often the key file is looked at again */
#define SCOPE             "https://www.googleapis.com/auth/cloud-platform"

struct waiter {
    uv_async_t async;         /* wakes the waiter's loop */
    cmx_prepare_done_cb done; /* the waiter's callback */
    void *ud;
    int err;       /* outcome of the exchange */
    bool queued;   /* still in the entry's list (guarded by mu) */
    bool canceled; /* the waiter went away (guarded by mu) */
    struct waiter *next;
    struct entry *e;
};

struct entry {
    char *path;           /* key file */
    EVP_PKEY *key;        /* its private key */
    char *email;          /* client_email */
    char *kid;            /* private_key_id */
    char *token_uri;      /* where to exchange */
    char *token;          /* current access token, NULL when none */
    uint64_t obtained_ms; /* when it was obtained */
    uint64_t expires_ms;  /* when it expires */
    bool refreshing;      /* an exchange is in flight */
    uint64_t refresh_started_ms;
    struct waiter *waiters; /* requests waiting for the exchange */
    struct timespec mtime;  /* the key file's modification time when loaded */
    off_t size;             /* and its size */
    uint64_t checked_ms;    /* when the file was last looked at */
    struct entry *next;
};

static uv_mutex_t mu;
static uv_once_t mu_once = UV_ONCE_INIT;
static struct entry *entries;

static void init_mu(void)
{
    uv_mutex_init(&mu);
}

static uint64_t real_now_ms(void)
{
    return cmx_time_unix_ms();
}

/* Wall clock (not cmx_clock_now_ms: `serve --now` must not move a JWT's iat). */
static uint64_t (*clock_fn)(void) = real_now_ms;

void cmx_gcp_token_set_clock(uint64_t (*fn)(void))
{
    clock_fn = fn != NULL ? fn : real_now_ms;
}

static uint64_t now_ms(void)
{
    return clock_fn();
}

int cmx_gcp_token_policy(uint64_t now, uint64_t obtained, uint64_t expires)
{
    if (expires <= obtained || now + MIN_LEFT_MS >= expires)
        return 2;
    uint64_t life = expires - obtained;
    uint64_t margin = life / 2 < REFRESH_MARGIN_MS ? life / 2 : REFRESH_MARGIN_MS;
    return now + margin >= expires ? 1 : 0;
}

/* ---- key files ------------------------------------------------------------------------ */

static const char *get_str(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

struct keyfile {
    EVP_PKEY *key;
    char *email, *kid, *token_uri;
};

static void keyfile_free(struct keyfile *k)
{
    EVP_PKEY_free(k->key);
    free(k->email);
    free(k->kid);
    free(k->token_uri);
    memset(k, 0, sizeof(*k));
}

static int load_keyfile(const char *path, struct keyfile *k, const char **why)
{
    memset(k, 0, sizeof(*k));
    json_object *o = json_object_from_file(path);
    if (o == NULL) {
        *why = "cannot read it as JSON";
        return CMX_EIO;
    }
    int rc = CMX_EINVAL;
    const char *type = get_str(o, "type"), *email = get_str(o, "client_email");
    const char *pem = get_str(o, "private_key"), *kid = get_str(o, "private_key_id");
    const char *uri = get_str(o, "token_uri");
    if (type == NULL || strcmp(type, "service_account") != 0) {
        *why = "is not a service-account key (\"type\": \"service_account\")";
        goto out_put;
    }
    if (email == NULL || pem == NULL) {
        *why = "lacks client_email or private_key";
        goto out_put;
    }
    if (uri == NULL)
        uri = "https://oauth2.googleapis.com/token";
    if (strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0) {
        *why = "token_uri is not an http(s) URL";
        goto out_put;
    }
    if (cmx_jws_key_from_pem(pem, strlen(pem), &k->key) != 0) {
        *why = "private_key is not an RSA private key in PEM";
        goto out_put;
    }
    k->email = strdup(email);
    k->kid = strdup(kid ? kid : "");
    k->token_uri = strdup(uri);
    if (k->email == NULL || k->kid == NULL || k->token_uri == NULL) {
        keyfile_free(k);
        *why = "out of memory";
        rc = CMX_ENOMEM;
        goto out_put;
    }
    rc = 0;
out_put:
    json_object_put(o);
    return rc;
}

int cmx_gcp_credentials_check(const char *path, const char **why)
{
    struct keyfile k;
    int r = load_keyfile(path, &k, why);
    if (r == 0)
        keyfile_free(&k);
    return r;
}

/* The entry for path, loaded on first use. Called with mu held. */
static struct entry *find_entry(const char *path, int *err)
{
    struct entry *e;
    for (e = entries; e != NULL; e = e->next)
        if (strcmp(e->path, path) == 0)
            break;
    if (e != NULL) {
        /* a rotated key (same path, new content) is picked up within RECHECK_MS */
        uint64_t now = now_ms();
        if (now - e->checked_ms < RECHECK_MS)
            return e;
        e->checked_ms = now;
        struct stat st;
        if (stat(path, &st) != 0 ||
            (st.st_mtim.tv_sec == e->mtime.tv_sec && st.st_mtim.tv_nsec == e->mtime.tv_nsec &&
             st.st_size == e->size))
            return e;
        struct keyfile nk;
        const char *why = NULL;
        if (load_keyfile(path, &nk, &why) != 0) {
            cmx_log(CMX_LOG_WARN, "vertex credentials %s changed but cannot be used: %s", path,
                    why);
            return e; /* keep the key that works */
        }
        EVP_PKEY_free(e->key);
        free(e->email);
        free(e->kid);
        free(e->token_uri);
        e->key = nk.key;
        e->email = nk.email;
        e->kid = nk.kid;
        e->token_uri = nk.token_uri;
        e->mtime = st.st_mtim;
        e->size = st.st_size;
        free(e->token); /* it belongs to the old key */
        e->token = NULL;
        cmx_log(CMX_LOG_INFO, "vertex credentials %s reloaded", path);
        return e;
    }
    struct keyfile k;
    const char *why = NULL;
    *err = load_keyfile(path, &k, &why);
    if (*err != 0) {
        cmx_log(CMX_LOG_WARN, "vertex credentials %s: %s", path, why);
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->path = strdup(path)) == NULL) {
        free(e);
        keyfile_free(&k);
        *err = CMX_ENOMEM;
        return NULL;
    }
    e->key = k.key;
    e->email = k.email;
    e->kid = k.kid;
    e->token_uri = k.token_uri;
    struct stat st;
    if (stat(path, &st) == 0) {
        e->mtime = st.st_mtim;
        e->size = st.st_size;
    }
    e->checked_ms = now_ms();
    e->next = entries;
    entries = e;
    return e;
}

static int assertion(struct entry *e, int64_t now_s, struct cmx_buf *out)
{
    struct cmx_buf h, c;
    cmx_buf_init(&h, 1u << 16);
    cmx_buf_init(&c, 1u << 16);
    int r = cmx_buf_puts(&h, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"") ||
            cmx_buf_json_escape(&h, e->kid, strlen(e->kid)) || cmx_buf_puts(&h, "\"}") ||
            cmx_buf_puts(&c, "{\"iss\":\"") ||
            cmx_buf_json_escape(&c, e->email, strlen(e->email)) ||
            cmx_buf_puts(&c, "\",\"scope\":\"" SCOPE "\",\"aud\":\"") ||
            cmx_buf_json_escape(&c, e->token_uri, strlen(e->token_uri)) ||
            cmx_buf_printf(&c, "\",\"iat\":%lld,\"exp\":%lld}", (long long)now_s,
                           (long long)now_s + 3600);
    if (r == 0)
        r = cmx_jws_rs256_compact(e->key, h.data, c.data, out);
    else
        r = CMX_ENOMEM;
    cmx_buf_free(&h);
    cmx_buf_free(&c);
    return r;
}

int cmx_gcp_assertion(const char *path, int64_t now_s, struct cmx_buf *out)
{
    uv_once(&mu_once, init_mu);
    uv_mutex_lock(&mu);
    int err = 0;
    struct entry *e = find_entry(path, &err);
    int r = e != NULL ? assertion(e, now_s, out) : err;
    uv_mutex_unlock(&mu);
    return r;
}

/* ---- waiters --------------------------------------------------------------------------- */

static void waiter_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void waiter_async_cb(uv_async_t *a)
{
    struct waiter *w = a->data;
    uv_mutex_lock(&mu);
    bool canceled = w->canceled;
    uv_mutex_unlock(&mu);
    if (!canceled)
        w->done(w->ud, w->err);
    uv_close((uv_handle_t *)&w->async, waiter_closed_cb);
}

void cmx_gcp_token_cancel(void *pending)
{
    struct waiter *w = pending;
    bool close_now = false;
    uv_mutex_lock(&mu);
    if (w->queued) {
        struct waiter **pp = &w->e->waiters;
        while (*pp != NULL && *pp != w)
            pp = &(*pp)->next;
        if (*pp == w)
            *pp = w->next;
        w->queued = false;
        close_now = true;
    } else {
        w->canceled = true; /* its wake-up is on its way: the async callback closes it */
    }
    uv_mutex_unlock(&mu);
    if (close_now)
        uv_close((uv_handle_t *)&w->async, waiter_closed_cb);
}

/* Wakes every waiter with err. Called with mu held. */
static void wake_all(struct entry *e, int err)
{
    struct waiter *w = e->waiters;
    e->waiters = NULL;
    while (w != NULL) {
        struct waiter *next = w->next;
        w->queued = false;
        w->err = err;
        uv_async_send(&w->async);
        w = next;
    }
}

/* ---- the exchange ---------------------------------------------------------------------- */

struct exchange {
    struct entry *e;
    char *body;             /* form body */
    const char *headers[2]; /* request headers */
    int status;             /* response status */
    struct cmx_buf resp;    /* response body */
};

static int ex_headers_cb(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    ((struct exchange *)ud)->status = status;
    return 0;
}

static int ex_data_cb(void *ud, const char *data, size_t len)
{
    return cmx_buf_append(&((struct exchange *)ud)->resp, data, len);
}

static void ex_done_cb(void *ud, int err, bool first_byte)
{
    struct exchange *x = ud;
    struct entry *e = x->e;
    char *token = NULL;
    int64_t expires_in = 0;
    if (err == 0 && x->status == 200 && x->resp.len > 0) {
        json_tokener *tok = json_tokener_new();
        json_object *o = tok ? json_tokener_parse_ex(tok, x->resp.data, (int)x->resp.len) : NULL;
        json_tokener_free(tok);
        json_object *v;
        const char *t = o ? get_str(o, "access_token") : NULL;
        if (t != NULL && t[0] != '\0')
            token = strdup(t);
        if (o != NULL && json_object_object_get_ex(o, "expires_in", &v))
            expires_in = json_object_get_int64(v);
        json_object_put(o);
    }
    if (err == 0 && token == NULL) {
        /* never log the body: it may hold a token */
        cmx_log(CMX_LOG_WARN, "vertex token exchange at %s answered HTTP %d", e->token_uri,
                x->status);
        err = CMX_EUPSTREAM;
    } else if (err != 0) {
        cmx_log(CMX_LOG_WARN, "vertex token exchange at %s failed: %s", e->token_uri,
                cmx_strerror(err));
    }
    if (expires_in <= 0 || expires_in > 86400)
        expires_in = 3600;
    uv_mutex_lock(&mu);
    if (token != NULL) {
        free(e->token);
        e->token = token;
        e->obtained_ms = now_ms();
        e->expires_ms = e->obtained_ms + (uint64_t)expires_in * 1000u;
    }
    e->refreshing = false;
    wake_all(e, err != 0 ? CMX_EAUTH : 0);
    uv_mutex_unlock(&mu);
    cmx_buf_free(&x->resp);
    free(x->body);
    free(x);
}

/* Starts the exchange on env's client. Called with mu held; on failure wakes nobody (the
 * caller decides). 0 or an error. */
static int start_exchange(struct entry *e, const struct cmx_prepare_env *env)
{
    struct exchange *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return CMX_ENOMEM;
    x->e = e;
    cmx_buf_init(&x->resp, MAX_TOKEN_BODY);
    struct cmx_buf jwt, form;
    cmx_buf_init(&jwt, 1u << 16);
    cmx_buf_init(&form, 1u << 16);
    int r = assertion(e, (int64_t)(now_ms() / 1000u), &jwt);
    if (r == 0)
        r = cmx_buf_puts(&form, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                                "&assertion=") ||
                    cmx_buf_append(&form, jwt.data, jwt.len) || cmx_buf_append(&form, "", 1)
                ? CMX_ENOMEM
                : 0;
    cmx_buf_free(&jwt);
    if (r != 0) {
        cmx_buf_free(&form);
        free(x);
        return r;
    }
    x->body = strndup(form.data, form.len - 1);
    size_t body_len = form.len - 1;
    cmx_buf_free(&form);
    if (x->body == NULL) {
        free(x);
        return CMX_ENOMEM;
    }
    x->headers[0] = "Content-Type: application/x-www-form-urlencoded";
    x->headers[1] = "Accept: application/json";
    struct cmx_upstream_request req = {
        .method = "POST",
        .url = e->token_uri,
        .headers = x->headers,
        .n_headers = 2,
        .body = x->body,
        .body_len = body_len,
        .connect_timeout_ms = 10000,
        .first_byte_timeout_ms = 15000,
        .idle_timeout_ms = 15000,
        .total_timeout_ms = 20000,
        .ud = x,
        .on_headers = ex_headers_cb,
        .on_data = ex_data_cb,
        .on_done = ex_done_cb,
    };
    struct cmx_upstream_xfer *xf;
    r = env->up_ops->start(env->up, &req, &xf);
    if (r != 0) {
        free(x->body);
        free(x);
        return r;
    }
    e->refreshing = true;
    e->refresh_started_ms = now_ms();
    return 0;
}

int cmx_gcp_token_acquire(const char *path, const struct cmx_prepare_env *env,
                          cmx_prepare_done_cb done, void *ud, void **pending)
{
    uv_once(&mu_once, init_mu);
    *pending = NULL;
    uv_mutex_lock(&mu);
    int err = 0;
    struct entry *e = find_entry(path, &err);
    if (e == NULL) {
        uv_mutex_unlock(&mu);
        return err;
    }
    uint64_t now = now_ms();
    int pol = e->token != NULL ? cmx_gcp_token_policy(now, e->obtained_ms, e->expires_ms) : 2;
    /* the exchange's start happens on this thread: the entry is unlocked during none of it,
     * so two workers cannot both start one */
    bool stale = e->refreshing && now - e->refresh_started_ms > STALE_REFRESH_MS;
    if (pol == 0) {
        uv_mutex_unlock(&mu);
        return 0;
    }
    if (pol == 1) {
        if (!e->refreshing || stale)
            (void)start_exchange(e, env); /* best effort: the current token still works */
        uv_mutex_unlock(&mu);
        return 0;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        uv_mutex_unlock(&mu);
        return CMX_ENOMEM;
    }
    if (!e->refreshing || stale) {
        int r = start_exchange(e, env);
        if (r != 0) {
            uv_mutex_unlock(&mu);
            free(w);
            return r;
        }
    }
    uv_async_init(env->loop, &w->async, waiter_async_cb);
    w->async.data = w;
    w->done = done;
    w->ud = ud;
    w->e = e;
    w->queued = true;
    w->next = e->waiters;
    e->waiters = w;
    *pending = w;
    uv_mutex_unlock(&mu);
    return 1;
}

char *cmx_gcp_token_copy(const char *path, struct cmx_arena *a)
{
    uv_once(&mu_once, init_mu);
    char *out = NULL;
    uv_mutex_lock(&mu);
    for (struct entry *e = entries; e != NULL; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            if (e->token != NULL && now_ms() + MIN_LEFT_MS / 2 < e->expires_ms)
                out = cmx_arena_strndup(a, e->token, strlen(e->token));
            break;
        }
    }
    uv_mutex_unlock(&mu);
    return out;
}
