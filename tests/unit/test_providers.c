/* Request rewriting, URL building per provider type, and the OpenAI chunk filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "providers/provider.h"

struct fixture {
    struct cmx_arena a;
    struct cmx_json_member m[CMX_MAX_MEMBERS];
    struct cmx_client_req cr;
};

static void parse(struct fixture *f, enum cmx_endpoint ep, const char *body)
{
    cmx_arena_init(&f->a);
    memset(&f->cr, 0, sizeof(f->cr));
    f->cr.ep = ep;
    f->cr.body = body;
    f->cr.body_len = strlen(body);
    f->cr.members = f->m;
    enum cmx_json_type top;
    assert_int_equal(
        cmx_json_scan(body, strlen(body), &top, f->m, CMX_MAX_MEMBERS, &f->cr.n_members), 0);
    const struct cmx_json_member *s = cmx_json_find(f->m, f->cr.n_members, "stream");
    f->cr.stream = s != NULL && s->type == CMX_JSON_TRUE;
}

static const char *rewrite(struct fixture *f, const char *model)
{
    const char *out;
    size_t len;
    assert_int_equal(cmx_openai_rewrite_body(&f->cr, model, &f->a, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    enum cmx_json_type top;
    assert_int_equal(cmx_json_scan(out, len, &top, NULL, 0, NULL), 0); /* still valid JSON */
    return out;
}

static void test_rewrite_model_only(void **state)
{
    struct fixture f;
    parse(&f, CMX_EP_CHAT,
          "{\"model\":\"gpt-4o\",\"seed\":9007199254740993,\"logit_bias\":{\"50256\":1e400},"
          "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_string_equal(rewrite(&f, "gpt4o-prod"),
                        "{\"model\":\"gpt4o-prod\",\"seed\":9007199254740993,\"logit_bias\":"
                        "{\"50256\":1e400},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    cmx_arena_reset(&f.a);
}

static void test_rewrite_escapes_model(void **state)
{
    struct fixture f;
    parse(&f, CMX_EP_EMBEDDINGS, "{ \"input\" : \"x\" , \"model\" : \"a\" }");
    assert_string_equal(rewrite(&f, "we\"ird\\name"),
                        "{ \"input\" : \"x\" , \"model\" : \"we\\\"ird\\\\name\" }");
    cmx_arena_reset(&f.a);
}

static void test_rewrite_stream_adds_usage(void **state)
{
    struct fixture f;
    parse(&f, CMX_EP_CHAT, "{\"model\":\"m\",\"stream\":true,\"messages\":[]}\n");
    assert_string_equal(rewrite(&f, "up"), "{\"model\":\"up\",\"stream\":true,\"messages\":[],"
                                           "\"stream_options\":{\"include_usage\":true}}\n");
    cmx_arena_reset(&f.a);
}

static void test_rewrite_stream_options_kept(void **state)
{
    struct fixture f;
    parse(&f, CMX_EP_CHAT,
          "{\"stream_options\":{\"include_obfuscation\":false},\"model\":\"m\",\"stream\":true}");
    const char *out = rewrite(&f, "up");
    assert_non_null(strstr(out, "\"include_obfuscation\":false"));
    assert_non_null(strstr(out, "\"include_usage\":true"));
    assert_non_null(strstr(out, "\"model\":\"up\""));
    cmx_arena_reset(&f.a);

    parse(&f, CMX_EP_CHAT, "{\"model\":\"m\",\"stream\":true,\"stream_options\":null}");
    assert_string_equal(rewrite(&f, "m"), "{\"model\":\"m\",\"stream\":true,"
                                          "\"stream_options\":{\"include_usage\":true}}");
    cmx_arena_reset(&f.a);

    parse(&f, CMX_EP_CHAT,
          "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}");
    assert_non_null(strstr(rewrite(&f, "m"), "{\"include_usage\":true}"));
    cmx_arena_reset(&f.a);
}

static void test_rewrite_no_stream_no_options(void **state)
{
    struct fixture f;
    parse(&f, CMX_EP_CHAT, "{\"model\":\"m\",\"stream\":false}");
    assert_string_equal(rewrite(&f, "m2"), "{\"model\":\"m2\",\"stream\":false}");
    cmx_arena_reset(&f.a);
}

static struct cmx_provider_cfg provider(enum cmx_provider_type t, const char *base, const char *key,
                                        const char *ver)
{
    struct cmx_provider_cfg p;
    memset(&p, 0, sizeof(p));
    p.name = "p";
    p.type = t;
    p.cloud = "c";
    p.base_url = (char *)base;
    p.api_key = (char *)key;
    p.api_version = (char *)ver;
    return p;
}

static void build(struct cmx_provider_cfg *p, const char *model, enum cmx_endpoint ep,
                  const char *body, struct cmx_provider_req *out, struct fixture *f)
{
    struct cmx_deployment_cfg d;
    memset(&d, 0, sizeof(d));
    d.provider = p;
    d.model = (char *)model;
    parse(f, ep, body);
    f->cr.request_id = "req_1";
    const char *why = NULL;
    assert_int_equal(cmx_provider_ops_for(p->type)->build(&d, &f->cr, &f->a, out, &why), 0);
}

static bool has_header(const struct cmx_provider_req *r, const char *line)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i], line) == 0)
            return true;
    return false;
}

static bool header_starts(const struct cmx_provider_req *r, const char *prefix)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strncasecmp(r->headers[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void test_url_openai(void **state)
{
    struct fixture f;
    struct cmx_provider_req r;
    struct cmx_provider_cfg p =
        provider(CMX_PROVIDER_OPENAI, "https://api.openai.com/v1/", "sk-test", NULL);
    build(&p, "gpt-4o", CMX_EP_CHAT, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://api.openai.com/v1/chat/completions");
    assert_true(has_header(&r, "Authorization: Bearer sk-test"));
    assert_string_equal(r.body, "{\"model\":\"gpt-4o\"}");
    cmx_arena_reset(&f.a);
    build(&p, "text-embedding-3-small", CMX_EP_EMBEDDINGS, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://api.openai.com/v1/embeddings");
    cmx_arena_reset(&f.a);
}

static void test_url_compatible_without_key(void **state)
{
    struct fixture f;
    struct cmx_provider_req r;
    struct cmx_provider_cfg p =
        provider(CMX_PROVIDER_OPENAI_COMPATIBLE, "http://127.0.0.1:8000/v1", NULL, NULL);
    build(&p, "llama", CMX_EP_CHAT, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "http://127.0.0.1:8000/v1/chat/completions");
    assert_false(header_starts(&r, "Authorization:"));
    cmx_arena_reset(&f.a);
}

static void test_url_azure_classic(void **state)
{
    struct fixture f;
    struct cmx_provider_req r;
    struct cmx_provider_cfg p =
        provider(CMX_PROVIDER_AZURE_OPENAI, "https://res.openai.azure.com", "azkey", "2024-10-21");
    build(&p, "gpt4o prod/1", CMX_EP_CHAT, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://res.openai.azure.com/openai/deployments/gpt4o%20prod%2F1/"
                               "chat/completions?api-version=2024-10-21");
    assert_true(has_header(&r, "api-key: azkey"));
    assert_false(header_starts(&r, "Authorization:"));
    cmx_arena_reset(&f.a);
    build(&p, "embed", CMX_EP_EMBEDDINGS, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://res.openai.azure.com/openai/deployments/embed/"
                               "embeddings?api-version=2024-10-21");
    cmx_arena_reset(&f.a);
}

static void test_url_azure_v1(void **state)
{
    struct fixture f;
    struct cmx_provider_req r;
    struct cmx_provider_cfg p =
        provider(CMX_PROVIDER_AZURE_OPENAI, "https://res.openai.azure.com/", "k", NULL);
    build(&p, "dep", CMX_EP_CHAT, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://res.openai.azure.com/openai/v1/chat/completions");
    assert_string_equal(r.body, "{\"model\":\"dep\"}");
    cmx_arena_reset(&f.a);
    struct cmx_provider_cfg p2 =
        provider(CMX_PROVIDER_AZURE_OPENAI, "https://res.openai.azure.com/openai/v1", "k", NULL);
    build(&p2, "dep", CMX_EP_EMBEDDINGS, "{\"model\":\"x\"}", &r, &f);
    assert_string_equal(r.url, "https://res.openai.azure.com/openai/v1/embeddings");
    cmx_arena_reset(&f.a);
}

static const char *filter(const char *in, bool keep, struct cmx_usage *u,
                          struct cmx_chunk_result *res, struct cmx_buf *b)
{
    assert_int_equal(cmx_openai_chunk_filter(in, strlen(in), keep, "chat.completion.chunk", "req_x",
                                             1700000000, u, b, res),
                     0);
    static char out[4096];
    memcpy(out, res->data, res->len);
    out[res->len] = '\0';
    return out;
}

static size_t text_bytes(const char *json)
{
    return cmx_openai_text_bytes(json, strlen(json));
}

/* The generated text of a choices array (what a stream that ended early is estimated from). */
static void test_text_bytes(void **state)
{
    (void)state;
    assert_int_equal(text_bytes("[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
                                "\"finish_reason\":null}]"),
                     5);
    assert_int_equal(
        text_bytes("[{\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\"}}]"), 8);
    /* escapes counted as written; a quote inside is not the end */
    assert_int_equal(text_bytes("[{\"delta\":{\"content\":\"a\\\"b\\\\\"}}]"), 6);
    /* tool-call arguments (a JSON text inside a string), reasoning and refusals */
    assert_int_equal(
        text_bytes("[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                   "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":1}\"}}]}}]"),
        12);
    assert_int_equal(text_bytes("[{\"delta\":{\"reasoning_content\":\"abc\",\"refusal\":\"no\","
                                "\"reasoning\":\"d\"}}]"),
                     6);
    /* whitespace around the colon; several choices */
    assert_int_equal(
        text_bytes("[ {\"delta\" : {\"content\" :\t\"ab\"}} , {\"delta\":{\"content\":\"c\"}} ]"),
        3);
    /* not text: null content, the word as a value, a "content" that is an array (logprobs),
     * other keys, a key that merely ends in "content" */
    assert_int_equal(text_bytes("[{\"delta\":{\"role\":\"assistant\",\"content\":null}}]"), 0);
    assert_int_equal(text_bytes("[{\"delta\":{\"role\":\"content\",\"x\":\"content\"}}]"), 0);
    assert_int_equal(text_bytes("[{\"logprobs\":{\"content\":[{\"token\":\"content\","
                                "\"bytes\":[1]}]},\"delta\":{}}]"),
                     0);
    assert_int_equal(text_bytes("[{\"delta\":{\"xcontent\":\"abcd\",\"contents\":\"e\"}}]"), 0);
    assert_int_equal(text_bytes("[]"), 0);
    assert_int_equal(text_bytes(""), 0);
    /* an unterminated string (not valid JSON) stays inside its bounds */
    assert_int_equal(text_bytes("{\"content\":\"abc"), 3);
    assert_int_equal(text_bytes("{\"content\":\"ab\\"), 3);
    assert_int_equal(text_bytes("{\"cont"), 0);
}

static void test_chunk_filter(void **state)
{
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    struct cmx_usage u;
    memset(&u, 0, sizeof(u));
    struct cmx_chunk_result res;

    const char *plain = "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                        "\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";
    assert_string_equal(filter(plain, false, &u, &res, &b), plain);
    assert_ptr_equal(res.data, plain); /* untouched chunks are not copied */
    /* the choices span, for the text estimate */
    assert_ptr_equal(res.choices, strstr(plain, "[{"));
    assert_int_equal(res.choices_len, strlen("[{\"delta\":{\"content\":\"x\"}}]"));

    /* "usage": null removed when the client did not ask, kept when it did */
    const char *withnull = "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                           "\"choices\":[],\"usage\":null}";
    assert_string_equal(filter(withnull, false, &u, &res, &b),
                        "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                        "\"choices\":[]}");
    assert_false(res.drop);
    assert_string_equal(filter(withnull, true, &u, &res, &b), withnull);
    const char *first = "{\"usage\":null,\"id\":\"a\",\"object\":\"x\",\"created\":1}";
    assert_string_equal(filter(first, false, &u, &res, &b),
                        "{\"id\":\"a\",\"object\":\"x\",\"created\":1}");

    /* the usage chunk: captured always, dropped unless asked for */
    const char *usage = "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                        "\"choices\":[ ],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,"
                        "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":4},"
                        "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}";
    filter(usage, false, &u, &res, &b);
    assert_true(res.drop);
    assert_true(u.reported);
    assert_int_equal(u.prompt_tokens, 12);
    assert_int_equal(u.completion_tokens, 5);
    assert_int_equal(u.cached_tokens, 4);
    assert_int_equal(u.reasoning_tokens, 2);
    memset(&u, 0, sizeof(u));
    assert_string_equal(filter(usage, true, &u, &res, &b), usage);
    assert_false(res.drop);
    assert_int_equal(u.prompt_tokens, 12);

    /* usage riding on a content chunk (some servers): kept content, usage removed */
    const char *ride = "{\"id\":\"a\",\"object\":\"o\",\"created\":1,\"choices\":[{\"x\":1}],"
                       "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
    assert_string_equal(filter(ride, false, &u, &res, &b),
                        "{\"id\":\"a\",\"object\":\"o\",\"created\":1,\"choices\":[{\"x\":1}]}");

    /* missing id / object / created are filled in */
    assert_string_equal(filter("{\"choices\":[]}", true, &u, &res, &b),
                        "{\"id\":\"chatcmpl-req_x\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1700000000,\"choices\":[]}");
    assert_string_equal(filter("{}", true, &u, &res, &b),
                        "{\"id\":\"chatcmpl-req_x\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1700000000}");

    /* [DONE], errors and non-JSON pass through with flags */
    filter("[DONE]", false, &u, &res, &b);
    assert_true(res.done);
    filter("{\"error\":{\"message\":\"boom\"}}", false, &u, &res, &b);
    assert_true(res.error);
    assert_string_equal(filter("not json", false, &u, &res, &b), "not json");
    assert_false(res.drop || res.error || res.done);
    cmx_buf_free(&b);
}

static struct cmx_usage usage_of(const char *json, int want_rc)
{
    struct cmx_usage u;
    memset(&u, 0x5a, sizeof(u));
    assert_int_equal(cmx_usage_parse(json, strlen(json), &u), want_rc);
    return u;
}

static void test_usage_parse(void **state)
{
    (void)state;
    struct cmx_usage u =
        usage_of("{\"prompt_tokens\":1200,\"completion_tokens\":300,\"total_tokens\":1500,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},"
                 "\"completion_tokens_details\":{\"reasoning_tokens\":256,\"accepted_prediction_"
                 "tokens\":0}}",
                 0);
    assert_int_equal(u.prompt_tokens, 1200);
    assert_int_equal(u.completion_tokens, 300);
    assert_int_equal(u.cached_tokens, 1024);
    assert_int_equal(u.reasoning_tokens, 256);
    assert_true(u.reported);

    /* no details, null details, whitespace */
    u = usage_of(" { \"prompt_tokens\" : 7 , \"completion_tokens\" : 0 , "
                 "\"prompt_tokens_details\" : null } ",
                 0);
    assert_int_equal(u.prompt_tokens, 7);
    assert_int_equal(u.completion_tokens, 0);
    assert_int_equal(u.cached_tokens, -1);
    assert_int_equal(u.reasoning_tokens, -1);
    assert_true(u.reported);

    /* counts up to CMX_USAGE_MAX_TOKENS; a non-integer or negative count is absent (-1) */
    u = usage_of("{\"prompt_tokens\":1000000000,\"completion_tokens\":1.5}", 0);
    assert_int_equal(u.prompt_tokens, CMX_USAGE_MAX_TOKENS);
    assert_int_equal(u.completion_tokens, -1);
    assert_true(u.reported);
    u = usage_of("{\"prompt_tokens\":-5,\"completion_tokens\":3}", 0);
    assert_int_equal(u.prompt_tokens, -1);
    assert_int_equal(u.completion_tokens, 3);
    assert_true(u.reported);
    u = usage_of("{\"prompt_tokens\":-5,\"completion_tokens\":-3}", 0);
    assert_false(u.reported);
    /* a count above it is a corrupt report: the whole usage is not taken (the request is
     * estimated and flagged instead of billed ~10^15 tokens) */
    u = usage_of("{\"prompt_tokens\":123456789012,\"completion_tokens\":7}", 0);
    assert_int_equal(u.prompt_tokens, 123456789012LL);
    assert_false(u.reported);
    u = usage_of("{\"prompt_tokens\":5,\"completion_tokens\":7,"
                 "\"completion_tokens_details\":{\"reasoning_tokens\":1000000001}}",
                 0);
    assert_false(u.reported);
    u = usage_of("{\"prompt_tokens\":1e3,\"completion_tokens\":\"5\","
                 "\"prompt_tokens_details\":{\"cached_tokens\":99999999999999999999}}",
                 0);
    assert_int_equal(u.prompt_tokens, -1);
    assert_int_equal(u.completion_tokens, -1);
    assert_int_equal(u.cached_tokens, -1);
    assert_false(u.reported);

    /* a duplicate key: the last one counts (as json-c and JavaScript read it) */
    u = usage_of("{\"prompt_tokens\":1,\"prompt_tokens\":2}", 0);
    assert_int_equal(u.prompt_tokens, 2);

    /* not an object, or not JSON */
    usage_of("null", CMX_EJSON);
    usage_of("[1,2]", CMX_EJSON);
    usage_of("{\"prompt_tokens\":1", CMX_EJSON);
    usage_of("", CMX_EJSON);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_model_only),
        cmocka_unit_test(test_rewrite_escapes_model),
        cmocka_unit_test(test_rewrite_stream_adds_usage),
        cmocka_unit_test(test_rewrite_stream_options_kept),
        cmocka_unit_test(test_rewrite_no_stream_no_options),
        cmocka_unit_test(test_url_openai),
        cmocka_unit_test(test_url_compatible_without_key),
        cmocka_unit_test(test_url_azure_classic),
        cmocka_unit_test(test_url_azure_v1),
        cmocka_unit_test(test_chunk_filter),
        cmocka_unit_test(test_text_bytes),
        cmocka_unit_test(test_usage_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
