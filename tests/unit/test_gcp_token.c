/* The service-account token cache against a scripted upstream client: one exchange for many
 * waiters, the request it sends (form, signed assertion), background refresh before expiry,
 * failures reaching the waiters, cancellation, and an unreadable key file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/pem.h>

#include "auth/gcp_token.h"
#include "auth/jws.h"
#include "core/arena.h"
#include "core/err.h"

/* ---- a scripted upstream client -------------------------------------------------------- */

struct fake_xfer {
    struct cmx_upstream_request req;
    char url[256];
    char body[8192];
    bool live;
};

static struct fake_xfer xfers[16];
static int n_starts;

static int fake_start(struct cmx_upstream *u, const struct cmx_upstream_request *req,
                      struct cmx_upstream_xfer **out)
{
    assert_true(n_starts < 16);
    struct fake_xfer *x = &xfers[n_starts++];
    x->req = *req;
    snprintf(x->url, sizeof(x->url), "%s", req->url);
    assert_true(req->body_len < sizeof(x->body));
    memcpy(x->body, req->body, req->body_len);
    x->body[req->body_len] = '\0';
    x->live = true;
    *out = (struct cmx_upstream_xfer *)x;
    return 0;
}

static const struct cmx_upstream_ops fake_ops = {.name = "fake", .start = fake_start};

/* Completes exchange i with status and body (NULL: a transport error). */
static void answer(int i, int status, const char *body)
{
    struct fake_xfer *x = &xfers[i];
    assert_true(x->live);
    x->live = false;
    if (body == NULL) {
        x->req.on_done(x->req.ud, CMX_ECONNECT, false);
        return;
    }
    assert_int_equal(x->req.on_headers(x->req.ud, status, NULL, 0), 0);
    assert_int_equal(x->req.on_data(x->req.ud, body, strlen(body)), 0);
    x->req.on_done(x->req.ud, 0, true);
}

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

struct waiter {
    int calls;
    int err;
};

static void done_cb(void *ud, int err)
{
    struct waiter *w = ud;
    w->calls++;
    w->err = err;
}

static char key_path[64];
static EVP_PKEY *key;

static void write_key(const char *kid)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long pl = BIO_get_mem_data(b, &pem);
    json_object *sa = json_object_new_object();
    json_object_object_add(sa, "type", json_object_new_string("service_account"));
    json_object_object_add(sa, "client_email", json_object_new_string("sa@x.iam.test"));
    json_object_object_add(sa, "private_key_id", json_object_new_string(kid));
    json_object_object_add(sa, "private_key", json_object_new_string_len(pem, (int)pl));
    json_object_object_add(sa, "token_uri", json_object_new_string("http://127.0.0.1:9/token"));
    const char *t = json_object_to_json_string(sa);
    FILE *f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(t, 1, strlen(t), f), strlen(t));
    fclose(f);
    json_object_put(sa);
    BIO_free(b);
}

static int setup(void **state)
{
    key = EVP_RSA_gen(2048);
    assert_non_null(key);
    snprintf(key_path, sizeof(key_path), "/tmp/cmx-gcp-XXXXXX");
    close(mkstemp(key_path));
    write_key("k1");
    fake_now = 1700000000000ull;
    cmx_gcp_token_set_clock(fake_clock);
    return 0;
}

static int teardown(void **state)
{
    unlink(key_path);
    EVP_PKEY_free(key);
    cmx_gcp_token_set_clock(NULL);
    return 0;
}

static void run_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void test_token_cache(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cmx_prepare_env env = {&loop, &fake_ops, NULL};
    struct waiter w[4] = {{0}};
    void *pend[4];

    /* three requests, one exchange */
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[i], &pend[i]), 1);
    assert_int_equal(n_starts, 1);
    assert_string_equal(xfers[0].url, "http://127.0.0.1:9/token");
    const char *pfx = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    assert_int_equal(strncmp(xfers[0].body, pfx, strlen(pfx)), 0);
    /* the assertion verifies with the key */
    const char *jwt = xfers[0].body + strlen(pfx);
    const char *dot2 = strrchr(jwt, '.');
    struct cmx_buf sig;
    cmx_buf_init(&sig, 1u << 16);
    assert_int_equal(cmx_b64url_decode(&sig, dot2 + 1, strlen(dot2 + 1)), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, (unsigned char *)sig.data, sig.len,
                                      (const unsigned char *)jwt, (size_t)(dot2 - jwt)),
                     1);
    EVP_MD_CTX_free(md);
    cmx_buf_free(&sig);
    /* one waiter leaves before the answer: it is never called */
    cmx_gcp_token_cancel(pend[2]);
    struct cmx_arena a;
    cmx_arena_init(&a);
    assert_null(cmx_gcp_token_copy(key_path, &a));
    answer(0, 200, "{\"access_token\":\"ya29.one\",\"expires_in\":3600,\"token_type\":\"Bearer\"}");
    run_loop(&loop);
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[0].err, 0);
    assert_int_equal(w[1].calls, 1);
    assert_int_equal(w[2].calls, 0);
    assert_string_equal(cmx_gcp_token_copy(key_path, &a), "ya29.one");

    /* fresh: no exchange */
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 0);
    assert_int_equal(n_starts, 1);

    /* 4 minutes before expiry: used at once, one background refresh */
    fake_now += (3600 - 240) * 1000ull;
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 0);
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 0);
    assert_int_equal(n_starts, 2);
    /* the refresh fails: the current token stays */
    answer(1, 500, "{\"error\":\"internal\"}");
    assert_string_equal(cmx_gcp_token_copy(key_path, &a), "ya29.one");
    /* the next user starts another refresh, which succeeds */
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 0);
    assert_int_equal(n_starts, 3);
    answer(2, 200, "{\"access_token\":\"ya29.two\",\"expires_in\":3600}");
    assert_string_equal(cmx_gcp_token_copy(key_path, &a), "ya29.two");
    assert_int_equal(w[3].calls, 0);

    /* expired: requests wait, and a failed exchange reaches them as an error */
    fake_now += 3600 * 1000ull;
    assert_null(cmx_gcp_token_copy(key_path, &a));
    memset(w, 0, sizeof(w));
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[0], &pend[0]), 1);
    assert_int_equal(n_starts, 4);
    answer(3, 0, NULL);
    run_loop(&loop);
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[0].err, CMX_EAUTH);
    /* a body without a token is a failure too */
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[1], &pend[1]), 1);
    answer(4, 200, "{\"nope\":1}");
    run_loop(&loop);
    assert_int_equal(w[1].calls, 1);
    assert_int_not_equal(w[1].err, 0);

    /* a rotated key file (new kid, longer content) is picked up within a minute, with a new
     * token */
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 1);
    answer(5, 200, "{\"access_token\":\"ya29.three\",\"expires_in\":3600}");
    run_loop(&loop);
    write_key("k2-rotated");
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 0);
    fake_now += 61 * 1000ull;
    assert_int_equal(cmx_gcp_token_acquire(key_path, &env, done_cb, &w[3], &pend[3]), 1);
    assert_int_equal(n_starts, 7);
    const char *a7 = xfers[6].body + strlen(pfx);
    struct cmx_buf hdr;
    cmx_buf_init(&hdr, 4096);
    assert_int_equal(cmx_b64url_decode(&hdr, a7, (size_t)(strchr(a7, '.') - a7)), 0);
    cmx_buf_append(&hdr, "", 1);
    assert_non_null(strstr(hdr.data, "\"kid\":\"k2-rotated\""));
    cmx_buf_free(&hdr);
    answer(6, 200, "{\"access_token\":\"ya29.four\",\"expires_in\":3600}");
    run_loop(&loop);
    assert_string_equal(cmx_gcp_token_copy(key_path, &a), "ya29.four");

    /* unreadable key file: an immediate error */
    assert_true(cmx_gcp_token_acquire("/nonexistent/sa.json", &env, done_cb, &w[2], &pend[2]) < 0);
    assert_int_equal(w[2].calls, 0);

    cmx_arena_reset(&a);
    uv_run(&loop, UV_RUN_DEFAULT); /* closes the waiters' handles */
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_token_cache)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
