/* The Bedrock provider: config of type bedrock, OpenAI -> Converse request tables, Converse
 * -> OpenAI responses (the Vercel AI SDK recordings in tests/fixtures/aws/bedrock-fixtures),
 * ConverseStream event streams -> chunks (re-framed recordings, every split point, in-stream
 * exceptions, bad CRCs, truncation), x-amzn-ErrorType errors, and embeddings fan-out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/eventstream.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "providers/provider.h"

#define FIX "tests/fixtures/aws/bedrock-fixtures"

static const struct cmx_provider_ops *B = &cmx_provider_bedrock;

static struct cmx_provider_cfg prov = {
    .name = "aws",
    .type = CMX_PROVIDER_BEDROCK,
    .region = "us-east-1",
    .base_url = "https://bedrock-runtime.us-east-1.amazonaws.com",
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
static struct cmx_deployment_cfg dep = {.provider = &prov,
                                        .model = "anthropic.claude-3-5-sonnet-20240620-v1:0"};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    fclose(f);
    s[got] = '\0';
    if (len)
        *len = got;
    return s;
}

struct req {
    struct cmx_arena a;
    struct cmx_json_member m[CMX_MAX_MEMBERS];
    struct cmx_client_req cr;
};

static void make_req(struct req *r, enum cmx_endpoint ep, const char *body)
{
    cmx_arena_init(&r->a);
    memset(&r->cr, 0, sizeof(r->cr));
    r->cr.ep = ep;
    r->cr.body = body;
    r->cr.body_len = strlen(body);
    r->cr.members = r->m;
    r->cr.request_id = "req-1";
    enum cmx_json_type top;
    assert_int_equal(
        cmx_json_scan(body, strlen(body), &top, r->m, CMX_MAX_MEMBERS, &r->cr.n_members), 0);
    const struct cmx_json_member *s = cmx_json_find(r->m, r->cr.n_members, "stream");
    r->cr.stream = s != NULL && s->type == CMX_JSON_TRUE;
}

static void assert_json_eq(const char *got, size_t len, const char *want)
{
    json_object *g = json_tokener_parse(got ? got : "");
    json_object *w = json_tokener_parse(want);
    assert_non_null(w);
    if (g == NULL || !json_object_equal(g, w)) {
        print_error("JSON differs\n--- want\n%s\n--- got\n%.*s\n", want, (int)len, got ? got : "");
        json_object_put(g);
        json_object_put(w);
        fail();
    }
    json_object_put(g);
    json_object_put(w);
}

static const char *header(const struct cmx_provider_req *p, const char *prefix)
{
    for (size_t i = 0; i < p->n_headers; i++)
        if (strncasecmp(p->headers[i], prefix, strlen(prefix)) == 0)
            return p->headers[i] + strlen(prefix);
    return NULL;
}

/* ---- request translation ----------------------------------------------------------------- */

struct table_row {
    const char *openai;
    const char *converse;
};

static const struct table_row table[] = {
    /* system + developer -> system; user text; sampling -> inferenceConfig */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
     "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No emoji.\"}]},"
     "{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":50,\"max_tokens\":9,"
     "\"temperature\":0.2,\"top_p\":0.9,\"stop\":\"END\",\"seed\":3,\"user\":\"u\","
     "\"frequency_penalty\":0.1,\"presence_penalty\":0.1,\"logit_bias\":{},"
     "\"parallel_tool_calls\":true,\"n\":1}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],"
     "\"system\":[{\"text\":\"Be brief.\"},{\"text\":\"No emoji.\"}],"
     "\"inferenceConfig\":{\"maxTokens\":50,\"temperature\":0.2,\"topP\":0.9,"
     "\"stopSequences\":[\"END\"]}}"},
    /* max_tokens alone, stop array; consecutive user messages merged */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
     "\"content\":[{\"type\":\"text\",\"text\":\"b\"},{\"type\":\"image_url\",\"image_url\":"
     "{\"url\":\"data:image/jpg;base64,QUJD\"}}]}],\"max_tokens\":7,\"stop\":[\"x\",\"y\"]}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"},{\"text\":\"b\"},"
     "{\"image\":{\"format\":\"jpeg\",\"source\":{\"bytes\":\"QUJD\"}}}]}],"
     "\"inferenceConfig\":{\"maxTokens\":7,\"stopSequences\":[\"x\",\"y\"]}}"},
    /* a tool round trip: tools, tool_choice named, assistant tool_calls, two tool results
     * folded into one user message, then the next user text merged into it */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t1\",\"type\":"
     "\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
     "{\"id\":\"t2\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]},"
     "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"-3C\"},"
     "{\"role\":\"tool\",\"tool_call_id\":\"t2\",\"content\":[{\"type\":\"text\",\"text\":"
     "\"?\"}]},{\"role\":\"user\",\"content\":\"thanks\"}],"
     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"description\":\"d\","
     "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}],"
     "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}}}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"weather?\"}]},"
     "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":\"get\","
     "\"input\":{\"city\":\"Oslo\"}}},{\"toolUse\":{\"toolUseId\":\"t2\",\"name\":\"get\","
     "\"input\":{}}}]},{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t1\","
     "\"content\":[{\"text\":\"-3C\"}]}},{\"toolResult\":{\"toolUseId\":\"t2\",\"content\":"
     "[{\"text\":\"?\"}]}},{\"text\":\"thanks\"}]}],"
     "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"get\",\"description\":\"d\","
     "\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
     "\"string\"}}}}}}],\"toolChoice\":{\"tool\":{\"name\":\"get\"}}}}"},
    /* tool_choice auto / required; a tool without parameters gets an empty object schema */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"required\"}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}],\"toolConfig\":{\"tools\":"
     "[{\"toolSpec\":{\"name\":\"f\",\"inputSchema\":{\"json\":{\"type\":\"object\","
     "\"properties\":{}}}}}],\"toolChoice\":{\"any\":{}}}}"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
     "\"tool_choice\":\"auto\"}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}],\"toolConfig\":{\"tools\":"
     "[{\"toolSpec\":{\"name\":\"f\",\"inputSchema\":{\"json\":{\"type\":\"object\"}}}}],"
     "\"toolChoice\":{\"auto\":{}}}}"},
    /* none without tool history: no toolConfig at all */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}"},
    /* none with tool history: toolConfig kept, toolChoice omitted */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\","
     "\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"r\"}],"
     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]},{\"role\":\"assistant\","
     "\"content\":[{\"toolUse\":{\"toolUseId\":\"a\",\"name\":\"f\",\"input\":{}}}]},{\"role\":"
     "\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"a\",\"content\":[{\"text\":\"r\"}]}}]}"
     "],"
     "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"f\",\"inputSchema\":{\"json\":{"
     "\"type\":\"object\",\"properties\":{}}}}}]}}"},
    /* tool history but no tools: Converse needs a toolConfig, declared from the history */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\","
     "\"content\":\"ok\",\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\",\"function\":{"
     "\"name\":\"g\",\"arguments\":\"{\\\"q\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"a\","
     "\"content\":\"r\"}]}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]},{\"role\":\"assistant\","
     "\"content\":[{\"text\":\"ok\"},{\"toolUse\":{\"toolUseId\":\"a\",\"name\":\"g\",\"input\":"
     "{\"q\":1}}}]},{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"a\","
     "\"content\":[{\"text\":\"r\"}]}}]}],\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":"
     "\"g\",\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{}}}}}]}}"},
    /* escapes that end strings or not: values are spliced through verbatim */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\\"b\\\\\"},"
     "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"]}\\\\\\\"{[\"}],"
     "\"tool_calls\":[{\"id\":\"x\\\"y\",\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"arguments\":\" {\\\"s\\\": \\\"\\\\\\\"]\\\"} \"}}]},{\"role\":\"tool\","
     "\"tool_call_id\":\"x\\\"y\",\"content\":\"\\u00e9\"}]}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\\\"b\\\\\"}]},"
     "{\"role\":\"assistant\",\"content\":[{\"text\":\"]}\\\\\\\"{[\"},{\"toolUse\":{"
     "\"toolUseId\":\"x\\\"y\",\"name\":\"f\",\"input\":{\"s\":\"\\\"]\"}}}]},{\"role\":"
     "\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"x\\\"y\",\"content\":[{"
     "\"text\":\"\u00e9\"}]}}]}],\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"f\","
     "\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{}}}}}]}}"},
    /* the top level is read in one pass: escaped names decode ("max\u005ftokens"), the last
     * of a repeated name wins, null reads as absent; whitespace anywhere between tokens */
    {"{ \"model\" : \"m\" , \"max\\u005ftokens\" : 5 , \"messages\" : [ { \"role\" : \"user\" ,"
     " \"content\" : [ { \"type\" : \"text\" , \"text\" : \"hi\" } ] } ] ,\n\t\"temperature\" :"
     " null , \"top_p\" : 1 , \"top_p\" : 0.5 , \"stop\" : null , \"n\" : null }",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],"
     "\"inferenceConfig\":{\"maxTokens\":5,\"topP\":0.5}}"},
    /* an integer past int64 is clamped, as strtoll does */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
     "\"max_completion_tokens\":99999999999999999999}",
     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}],"
     "\"inferenceConfig\":{\"maxTokens\":9223372036854775807}}"},
};

static void test_request_table(void **state)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct req r;
        make_req(&r, CMX_EP_CHAT, table[i].openai);
        struct cmx_provider_req out = {0};
        const char *why = NULL;
        int rc = B->build(&dep, &r.cr, &r.a, &out, &why);
        if (rc != 0)
            print_error("row %zu: %s\n", i, why ? why : "?");
        assert_int_equal(rc, 0);
        assert_json_eq(out.body, out.body_len, table[i].converse);
        cmx_arena_reset(&r.a);
    }
}

static const char *const rejected[][2] = {
    {"{\"model\":\"m\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "'n'"},
    {"{\"model\":\"m\",\"logprobs\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
     "logprobs"},
    {"{\"model\":\"m\",\"response_format\":{\"type\":\"json_schema\"},\"messages\":[{\"role\":"
     "\"user\",\"content\":\"x\"}]}",
     "response_format"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
     "\"image_url\":{\"url\":\"https://example.com/a.png\"}}]}]}",
     "data: URLs"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\","
     "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1\"}}]}]}",
     "arguments"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "tool_call_id"},
    {"{\"model\":\"m\",\"messages\":[]}", "messages"},
    {"{\"model\":\"m\",\"functions\":[],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
     "tools"},
    {"{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
     "positive"},
    {"{\"model\":\"m\",\"tools\":[{\"type\":\"web_search\"}],\"messages\":[{\"role\":\"user\","
     "\"content\":\"x\"}]}",
     "function"},
};

static void test_request_rejected(void **state)
{
    for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
        struct req r;
        make_req(&r, CMX_EP_CHAT, rejected[i][0]);
        struct cmx_provider_req out = {0};
        const char *why = NULL;
        assert_int_equal(B->build(&dep, &r.cr, &r.a, &out, &why), CMX_EINVAL);
        assert_non_null(why);
        if (strstr(why, rejected[i][1]) == NULL)
            print_error("row %zu: %s\n", i, why);
        assert_non_null(strstr(why, rejected[i][1]));
        cmx_arena_reset(&r.a);
    }
}

static void test_url_and_signature(void **state)
{
    cmx_clock_freeze(UINT64_C(1767225600000)); /* 2026-01-01T00:00:00Z */
    struct req r;
    make_req(&r, CMX_EP_CHAT,
             "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"hi\"}]}");
    struct cmx_provider_req out = {0};
    const char *why = NULL;
    prov.session_token = "TOKEN123";
    assert_int_equal(B->build(&dep, &r.cr, &r.a, &out, &why), 0);
    assert_string_equal(out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                                 "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
    assert_string_equal(header(&out, "Host: "), "bedrock-runtime.us-east-1.amazonaws.com");
    assert_string_equal(header(&out, "Accept: "), "application/vnd.amazon.eventstream");
    assert_string_equal(header(&out, "X-Amz-Date: "), "20260101T000000Z");
    assert_string_equal(header(&out, "X-Amz-Security-Token: "), "TOKEN123");
    const char *auth = header(&out, "Authorization: ");
    assert_non_null(auth);
    assert_non_null(strstr(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/"
                                 "bedrock/aws4_request, SignedHeaders=accept;content-type;host;"
                                 "x-amz-date;x-amz-security-token, Signature="));
    assert_null(strstr(auth, prov.secret_access_key));
    prov.session_token = NULL;
    cmx_arena_reset(&r.a);

    /* an endpoint with a path prefix; an ARN as model id; a Bedrock API key */
    struct cmx_provider_cfg p2 = prov;
    p2.base_url = "http://127.0.0.1:9/prefix";
    p2.api_key = "bedrock-api-key-xyz";
    struct cmx_deployment_cfg d2 = {
        .provider = &p2,
        .model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x.y-v1:0"};
    make_req(&r, CMX_EP_CHAT,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(B->build(&d2, &r.cr, &r.a, &out, &why), 0);
    assert_string_equal(out.url,
                        "http://127.0.0.1:9/prefix/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A"
                        "123456789012%3Ainference-profile%2Fus.x.y-v1%3A0/converse");
    assert_string_equal(header(&out, "Host: "), "127.0.0.1:9");
    assert_string_equal(header(&out, "Authorization: "), "Bearer bedrock-api-key-xyz");
    assert_null(header(&out, "X-Amz-Date: "));
    cmx_arena_reset(&r.a);
    cmx_clock_unfreeze();
}

/* ---- response translation ------------------------------------------------------------------ */

static void translate_fixture(const char *file, const char *want)
{
    size_t len;
    char *body = slurp(file, &len);
    struct req r;
    make_req(&r, CMX_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}");
    struct cmx_buf out;
    cmx_buf_init(&out, 1u << 20);
    assert_int_equal(B->translate(&dep, &r.cr, body, len, &r.a, &out), 0);
    assert_json_eq(out.data, out.len, want);
    cmx_buf_free(&out);
    cmx_arena_reset(&r.a);
    free(body);
}

#define MODEL "\"model\":\"anthropic.claude-3-5-sonnet-20240620-v1:0\""

static void test_response_fixtures(void **state)
{
    translate_fixture(
        FIX "/amazon-bedrock-text.json",
        "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"Let me count the \\\"r\\\"s "
        "in \\\"strawberry\\\":\\n\\ns-t-**r**-a-w-b-e-**r**-**r**-y\\n\\nThere are "
        "**3** \\\"r\\\"s in \\\"strawberry.\\\"\"},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":22,\"completion_tokens\":57,\"total_tokens\":79,"
        "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    translate_fixture(
        FIX "/amazon-bedrock-tool-call.1.json",
        "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
        "\"tool-use-id\",\"type\":\"function\",\"function\":{\"name\":\"bash\","
        "\"arguments\":\"{\\\"command\\\":\\\"ls -l\\\"}\"}}]},\"finish_reason\":"
        "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,"
        "\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    translate_fixture(
        FIX "/amazon-bedrock-tool-no-args.json",
        "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"I'll update the issue list "
        "for you.\",\"tool_calls\":[{\"id\":\"tool-use-id\",\"type\":\"function\","
        "\"function\":{\"name\":\"updateIssueList\",\"arguments\":\"{}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":100,"
        "\"completion_tokens\":25,\"total_tokens\":125,\"prompt_tokens_details\":"
        "{\"cached_tokens\":0}}}");
    translate_fixture(FIX "/amazon-bedrock-json-with-tools.1.json",
                      "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":\"Calling multiple tools."
                      "Finally the JSON response.\",\"tool_calls\":["
                      "{\"id\":\"tool-1\",\"type\":\"function\",\"function\":{\"name\":\"tool-a\","
                      "\"arguments\":\"{\\\"param\\\":\\\"a\\\"}\"}},"
                      "{\"id\":\"tool-2\",\"type\":\"function\",\"function\":{\"name\":\"tool-b\","
                      "\"arguments\":\"{\\\"param\\\":\\\"b\\\"}\"}},"
                      "{\"id\":\"json-tool-id\",\"type\":\"function\",\"function\":{\"name\":"
                      "\"json\",\"arguments\":\"{\\\"final\\\":\\\"result\\\"}\"}}]},"
                      "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":28,"
                      "\"completion_tokens\":62,\"total_tokens\":90,\"prompt_tokens_details\":"
                      "{\"cached_tokens\":0}}}");
    translate_fixture(FIX "/amazon-bedrock-reasoning.json",
                      "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":\"There are **3** r's in "
                      "\\\"strawberry\\\":\\n\\n1. st**r**awbe**r****r**y\",\"reasoning_content\":"
                      "\"Let me count the r's in \\\"strawberry\\\":\\n\\ns-t-r-a-w-b-e-r-r-y\\n\\n"
                      "There are 3 r's.\"},\"finish_reason\":\"stop\"}],\"usage\":{"
                      "\"prompt_tokens\":51,\"completion_tokens\":78,\"total_tokens\":129,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
}

static void test_response_table(void **state)
{
    static const char *const rows[][2] = {
        /* cache tokens count as prompt tokens; reads are also cached_tokens */
        {"{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"a\"},"
         "{\"text\":\"b\"}]}},\"stopReason\":\"max_tokens\",\"usage\":{\"inputTokens\":10,"
         "\"outputTokens\":5,\"totalTokens\":15,\"cacheReadInputTokens\":100,"
         "\"cacheWriteInputTokens\":7}}",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":\"ab\"},\"finish_reason\":\"length\"}],\"usage\":{"
         "\"prompt_tokens\":117,\"completion_tokens\":5,\"total_tokens\":122,"
         "\"prompt_tokens_details\":{\"cached_tokens\":100}}}"},
        {"{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[]}},\"stopReason\":"
         "\"guardrail_intervened\"}",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"content_filter\"}]}"},
        {"{\"output\":{\"message\":{\"content\":[{\"text\":\"x\"}]}},\"stopReason\":"
         "\"stop_sequence\"}",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}]}"},
        /* usage names escaped / repeated / null, whitespace everywhere */
        {"{ \"output\" : { \"message\" : { \"content\" : [ { \"text\" : \"a\\\"b\" } ] } } ,"
         " \"stopReason\" : \"end_turn\" , \"usage\" : { \"input\\u0054okens\" : 3 ,"
         " \"outputTokens\" : 1 , \"outputTokens\" : 2 , \"cacheReadInputTokens\" : null } }",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":\"a\\\"b\"},\"finish_reason\":\"stop\"}],\"usage\":{"
         "\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,"
         "\"prompt_tokens_details\":{\"cached_tokens\":0}}}"},
        /* tool calls only: content is null; an empty text block still counts as no text */
        {"{\"output\":{\"message\":{\"content\":[{\"text\":\"\"},{\"toolUse\":{\"toolUseId\":"
         "\"t\",\"name\":\"f\",\"input\":{ \"a\" : [1, 2] }}}]}},\"stopReason\":\"tool_use\"}",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t\",\"type\":"
         "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":[1,2]}\"}}]},"
         "\"finish_reason\":\"tool_calls\"}]}"},
        {"{\"output\":{\"message\":{\"content\":[{\"text\":\"x\"}]}},\"stopReason\":"
         "\"content_filtered\"}",
         "{\"object\":\"chat.completion\"," MODEL ",\"choices\":[{\"index\":0,\"message\":{"
         "\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"content_filter\"}]}"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct req r;
        make_req(&r, CMX_EP_CHAT, "{}");
        struct cmx_buf out;
        cmx_buf_init(&out, 1u << 20);
        assert_int_equal(B->translate(&dep, &r.cr, rows[i][0], strlen(rows[i][0]), &r.a, &out), 0);
        assert_json_eq(out.data, out.len, rows[i][1]);
        cmx_buf_free(&out);
        cmx_arena_reset(&r.a);
    }
    /* not a Converse answer */
    struct req r;
    make_req(&r, CMX_EP_CHAT, "{}");
    struct cmx_buf out;
    cmx_buf_init(&out, 1u << 20);
    assert_int_not_equal(B->translate(&dep, &r.cr, "{\"x\":1}", 7, &r.a, &out), 0);
    assert_int_not_equal(B->translate(&dep, &r.cr, "nope", 4, &r.a, &out), 0);
    cmx_buf_free(&out);
    cmx_arena_reset(&r.a);
}

/* ---- streams -------------------------------------------------------------------------------- */

/* Re-frames a *.chunks.txt recording ({"eventType":{...}} per line) as an event stream. */
static void frame_chunks(const char *file, struct cmx_buf *wire)
{
    size_t len;
    char *text = slurp(file, &len);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        json_object_object_foreach(o, key, val)
        {
            const char *payload = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
            struct cmx_es_header h[3] = {
                {":event-type", 11, CMX_ES_STRING, 0, key, strlen(key)},
                {":content-type", 13, CMX_ES_STRING, 0, "application/json", 16},
                {":message-type", 13, CMX_ES_STRING, 0, "event", 5},
            };
            assert_int_equal(cmx_es_encode(wire, h, 3, payload, strlen(payload)), 0);
        }
        json_object_put(o);
    }
    free(text);
}

struct chunks {
    json_object *list; /* parsed chunks; "[DONE]" as a string */
};

static int chunk_cb(void *ud, const char *json, size_t len)
{
    struct chunks *c = ud;
    if (len == 6 && memcmp(json, "[DONE]", 6) == 0) {
        json_object_array_add(c->list, json_object_new_string("[DONE]"));
        return 0;
    }
    json_object *o = json_tokener_parse(json);
    assert_non_null(o); /* every chunk is valid JSON */
    json_object_array_add(c->list, o);
    return 0;
}

/* Feeds wire with cuts at a and b; returns the chunks; *fin = stream_finish's return. */
static json_object *run_stream(const char *wire, size_t len, size_t a, size_t b, int *feed_rc,
                               int *fin)
{
    struct cmx_arena ar;
    cmx_arena_init(&ar);
    void *st = B->stream_new(&ar, &dep);
    assert_non_null(st);
    struct chunks c = {json_object_new_array()};
    *feed_rc = B->stream_feed(st, wire, a, chunk_cb, &c);
    if (*feed_rc == 0)
        *feed_rc = B->stream_feed(st, wire + a, b - a, chunk_cb, &c);
    if (*feed_rc == 0)
        *feed_rc = B->stream_feed(st, wire + b, len - b, chunk_cb, &c);
    *fin = *feed_rc == 0 ? B->stream_finish(st, chunk_cb, &c) : *feed_rc;
    B->stream_free(st);
    cmx_arena_reset(&ar);
    return c.list;
}

struct summary {
    char content[4096];
    char reasoning[4096];
    char args[8][256];
    char ids[8][64];
    char names[8][64];
    int n_tools;
    char finish[32];
    int64_t prompt, completion, cached;
    bool done_last;
    bool usage_after_finish;
    int n_role;
};

static void summarize(json_object *list, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    s->prompt = s->completion = s->cached = -1;
    size_t n = json_object_array_length(list);
    bool finish_seen = false;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(list, i);
        if (json_object_is_type(c, json_type_string)) {
            assert_int_equal(i, n - 1); /* [DONE] only at the end */
            s->done_last = true;
            continue;
        }
        json_object *v;
        assert_true(json_object_object_get_ex(c, "object", &v));
        assert_string_equal(json_object_get_string(v), "chat.completion.chunk");
        json_object *choices = json_object_object_get(c, "choices");
        json_object *u = json_object_object_get(c, "usage");
        if (u != NULL) {
            assert_int_equal(json_object_array_length(choices), 0);
            s->prompt = json_object_get_int64(json_object_object_get(u, "prompt_tokens"));
            s->completion = json_object_get_int64(json_object_object_get(u, "completion_tokens"));
            s->cached = json_object_get_int64(json_object_object_get(
                json_object_object_get(u, "prompt_tokens_details"), "cached_tokens"));
            s->usage_after_finish = finish_seen;
            continue;
        }
        json_object *ch = json_object_array_get_idx(choices, 0);
        json_object *d = json_object_object_get(ch, "delta");
        json_object *fr = json_object_object_get(ch, "finish_reason");
        if (fr != NULL && json_object_is_type(fr, json_type_string)) {
            snprintf(s->finish, sizeof(s->finish), "%s", json_object_get_string(fr));
            finish_seen = true;
        }
        if (json_object_object_get_ex(d, "role", &v))
            s->n_role++;
        if (json_object_object_get_ex(d, "content", &v))
            strncat(s->content, json_object_get_string(v),
                    sizeof(s->content) - strlen(s->content) - 1);
        if (json_object_object_get_ex(d, "reasoning_content", &v))
            strncat(s->reasoning, json_object_get_string(v),
                    sizeof(s->reasoning) - strlen(s->reasoning) - 1);
        json_object *tcs = json_object_object_get(d, "tool_calls");
        for (size_t k = 0; tcs && k < json_object_array_length(tcs); k++) {
            json_object *tc = json_object_array_get_idx(tcs, k);
            int idx = json_object_get_int(json_object_object_get(tc, "index"));
            assert_true(idx >= 0 && idx < 8);
            if (idx >= s->n_tools)
                s->n_tools = idx + 1;
            json_object *fn = json_object_object_get(tc, "function");
            if (json_object_object_get_ex(tc, "id", &v))
                snprintf(s->ids[idx], sizeof(s->ids[0]), "%s", json_object_get_string(v));
            if (json_object_object_get_ex(fn, "name", &v))
                snprintf(s->names[idx], sizeof(s->names[0]), "%s", json_object_get_string(v));
            if (json_object_object_get_ex(fn, "arguments", &v))
                strncat(s->args[idx], json_object_get_string(v),
                        sizeof(s->args[0]) - strlen(s->args[idx]) - 1);
        }
    }
}

static void check_stream(const char *file, void (*check)(const struct summary *), bool all_splits)
{
    struct cmx_buf wire;
    cmx_buf_init(&wire, 1u << 20);
    frame_chunks(file, &wire);
    size_t step = all_splits ? 1 : 37;
    for (size_t a = 0; a <= wire.len; a += step) {
        size_t b = a + (wire.len - a) / 2;
        int frc, fin;
        json_object *list = run_stream(wire.data, wire.len, a, b, &frc, &fin);
        assert_int_equal(frc, 0);
        assert_int_equal(fin, 0);
        struct summary s;
        summarize(list, &s);
        assert_true(s.done_last);
        assert_int_equal(s.n_role, 1);
        check(&s);
        json_object_put(list);
    }
    cmx_buf_free(&wire);
}

static void check_text(const struct summary *s)
{
    assert_string_equal(s->content, "Let me count the \"r\"s in \"strawberry\":\n\ns-t-**r**-a-w-b-"
                                    "e-**r**-**r**-y\n\nThere are **3** r's in \"strawberry.\"");
    assert_string_equal(s->finish, "stop");
    assert_int_equal(s->prompt, 22);
    assert_int_equal(s->completion, 55);
    assert_int_equal(s->cached, 0);
    assert_true(s->usage_after_finish);
    assert_int_equal(s->n_tools, 0);
}

static void check_tool_call(const struct summary *s)
{
    assert_int_equal(s->n_tools, 1);
    assert_string_equal(s->ids[0], "tool-use-id");
    assert_string_equal(s->names[0], "test-tool");
    assert_string_equal(s->args[0], "{\"value\":\"Sparkle Day\"}");
    assert_string_equal(s->finish, "tool_calls");
    /* metadata came before messageStop in this recording: usage still goes last */
    assert_true(s->usage_after_finish);
    assert_int_equal(s->prompt, 125);
    assert_int_equal(s->completion, 45);
}

static void check_no_args(const struct summary *s)
{
    assert_string_equal(s->content, "I'll update the issue list for you.");
    assert_int_equal(s->n_tools, 1);
    assert_string_equal(s->names[0], "updateIssueList");
    assert_string_equal(s->args[0], "{}");
    assert_string_equal(s->finish, "tool_calls");
}

static void check_multi(const struct summary *s)
{
    assert_string_equal(s->content, "Multiple tools.Final JSON.");
    assert_int_equal(s->n_tools, 3);
    assert_string_equal(s->names[0], "tool-a");
    assert_string_equal(s->args[0], "{\"a\":\"1\"}");
    assert_string_equal(s->names[1], "tool-b");
    assert_string_equal(s->args[1], "{\"b\":\"2\"}");
    assert_string_equal(s->ids[2], "json-tool-id");
    assert_string_equal(s->args[2], "{\"final\":\"result\"}");
    assert_int_equal(s->prompt, -1); /* no metadata in this recording */
}

static void check_reasoning(const struct summary *s)
{
    assert_string_equal(s->reasoning,
                        "Let me count the r's in \"strawberry\":\n\ns-t-r-a-w-b-e-r-r-y\n\nr "
                        "appears at positions 3, 8, and 9.\n\nSo there are 3 r's.");
    assert_non_null(strstr(s->content, "There are **3** r's"));
    assert_int_equal(s->prompt, 51);
}

static void test_stream_fixtures(void **state)
{
    check_stream(FIX "/amazon-bedrock-text.chunks.txt", check_text, true);
    check_stream(FIX "/amazon-bedrock-tool-call.1.chunks.txt", check_tool_call, true);
    check_stream(FIX "/amazon-bedrock-tool-no-args.chunks.txt", check_no_args, false);
    check_stream(FIX "/amazon-bedrock-json-with-tools.1.chunks.txt", check_multi, false);
    check_stream(FIX "/amazon-bedrock-reasoning.chunks.txt", check_reasoning, false);
}

static unsigned char *b64file(const char *path, size_t *out)
{
    size_t n;
    char *t = slurp(path, &n);
    while (n && (t[n - 1] == '\n' || t[n - 1] == '\r'))
        n--;
    unsigned char *o = malloc(n);
    int r = EVP_DecodeBlock(o, (unsigned char *)t, (int)n);
    size_t pad = (n && t[n - 1] == '=') + (n > 1 && t[n - 2] == '=');
    *out = (size_t)r - pad;
    free(t);
    return o;
}

static void test_stream_exception(void **state)
{
    size_t len;
    unsigned char *wire =
        b64file("tests/fixtures/aws/bedrock-frames/delta-then-modelStreamErrorException."
                "eventstream.base64.txt",
                &len);
    for (size_t a = 0; a <= len; a++) {
        int frc, fin;
        json_object *list = run_stream((char *)wire, len, a, a + (len - a) / 2, &frc, &fin);
        assert_int_equal(frc, 0);
        assert_int_equal(fin, 0); /* the error event was the end: no [DONE] */
        assert_int_equal(json_object_array_length(list), 2);
        json_object *c0 = json_object_array_get_idx(list, 0);
        assert_string_equal(
            json_object_get_string(json_object_object_get(
                json_object_object_get(
                    json_object_array_get_idx(json_object_object_get(c0, "choices"), 0), "delta"),
                "content")),
            "before error");
        json_object *e = json_object_object_get(json_object_array_get_idx(list, 1), "error");
        assert_non_null(e);
        assert_string_equal(json_object_get_string(json_object_object_get(e, "code")),
                            "modelStreamErrorException");
        assert_string_equal(json_object_get_string(json_object_object_get(e, "type")),
                            "server_error");
        assert_non_null(strstr(json_object_get_string(json_object_object_get(e, "message")),
                               "Model Stream Error"));
        json_object_put(list);
    }
    free(wire);

    /* throttlingException -> rate_limit_error */
    struct cmx_buf w;
    cmx_buf_init(&w, 1u << 16);
    struct cmx_es_header h[3] = {
        {":exception-type", 15, CMX_ES_STRING, 0, "throttlingException", 19},
        {":content-type", 13, CMX_ES_STRING, 0, "application/json", 16},
        {":message-type", 13, CMX_ES_STRING, 0, "exception", 9},
    };
    const char *pl = "{\"message\":\"Too many tokens, please wait.\"}";
    assert_int_equal(cmx_es_encode(&w, h, 3, pl, strlen(pl)), 0);
    int frc, fin;
    json_object *list = run_stream(w.data, w.len, 0, 0, &frc, &fin);
    assert_int_equal(fin, 0);
    assert_int_equal(json_object_array_length(list), 1);
    json_object *e = json_object_object_get(json_object_array_get_idx(list, 0), "error");
    assert_string_equal(json_object_get_string(json_object_object_get(e, "type")),
                        "rate_limit_error");
    json_object_put(list);
    cmx_buf_free(&w);
}

static void test_stream_corrupt_and_truncated(void **state)
{
    struct cmx_buf wire;
    cmx_buf_init(&wire, 1u << 20);
    frame_chunks(FIX "/amazon-bedrock-text.chunks.txt", &wire);
    /* a flipped byte anywhere: an upstream error, never a quiet end */
    for (size_t i = 0; i < wire.len; i += 7) {
        wire.data[i] ^= 0x20;
        int frc, fin;
        json_object *list = run_stream(wire.data, wire.len, i / 2, i, &frc, &fin);
        assert_int_not_equal(fin, 0);
        summarize(list, &(struct summary){0});
        json_object_put(list);
        wire.data[i] ^= 0x20;
    }
    /* cut anywhere before messageStop's last byte: finish fails */
    struct cmx_buf cut;
    cmx_buf_init(&cut, 1u << 20);
    frame_chunks(FIX "/amazon-bedrock-text.chunks.txt", &cut);
    size_t meta = 0; /* the metadata frame is last: find where it starts */
    {
        const unsigned char *p = (const unsigned char *)cut.data;
        size_t at = 0;
        while (at < cut.len) {
            uint32_t t = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 |
                         (uint32_t)p[at + 2] << 8 | p[at + 3];
            if (at + t >= cut.len)
                meta = at;
            at += t;
        }
    }
    for (size_t n = 0; n < meta; n += 5) {
        int frc, fin;
        json_object *list = run_stream(cut.data, n, 0, n, &frc, &fin);
        assert_int_equal(frc, 0);
        assert_int_equal(fin, CMX_EUPSTREAM);
        json_object_put(list);
    }
    cmx_buf_free(&cut);
    cmx_buf_free(&wire);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_parse_error(void **state)
{
    struct cmx_arena a;
    cmx_arena_init(&a);
    struct cmx_http_header h[] = {
        {"x-amzn-errortype", 16,
         "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 71},
        {"x-amzn-requestid", 16, "abc", 3},
    };
    struct cmx_upstream_error e;
    const char *body = "{\"message\":\"Too many requests, please wait before trying again.\"}";
    B->parse_error(429, h, 2, body, strlen(body), &a, &e);
    assert_string_equal(e.code, "ThrottlingException");
    assert_string_equal(e.type, "rate_limit_error");
    assert_string_equal(e.message, "Bedrock: Too many requests, please wait before trying again.");
    struct cmx_http_header v[] = {{"X-Amzn-ErrorType", 16, "ValidationException", 19}};
    body = "{\"Message\":\"Malformed input request\"}";
    B->parse_error(400, v, 1, body, strlen(body), &a, &e);
    assert_string_equal(e.code, "ValidationException");
    assert_string_equal(e.type, "invalid_request_error");
    assert_string_equal(e.message, "Bedrock: Malformed input request");
    struct cmx_http_header s[] = {{"x-amzn-errortype", 16, "InvalidSignatureException", 25}};
    B->parse_error(403, s, 1, "", 0, &a, &e);
    assert_string_equal(e.type, "permission_error");
    assert_string_equal(e.message, "Bedrock returned HTTP 403 InvalidSignatureException");
    /* no header: the body's __type */
    body = "{\"__type\":\"com.amazon.coral#ServiceUnavailableException\",\"message\":\"busy\"}";
    B->parse_error(503, NULL, 0, body, strlen(body), &a, &e);
    assert_string_equal(e.code, "ServiceUnavailableException");
    assert_null(e.type);           /* derived from 503 by the proxy */
    assert_int_equal(e.status, 0); /* the upstream's status stands */
    /* a quota error comes as 400 but is a rate limit: 429 (fails over), typed so */
    struct cmx_http_header q[] = {{"x-amzn-errortype", 16, "ServiceQuotaExceededException", 29}};
    body = "{\"message\":\"Your request exceeds the service quota for your account.\"}";
    B->parse_error(400, q, 1, body, strlen(body), &a, &e);
    assert_string_equal(e.type, "rate_limit_error");
    assert_int_equal(e.status, 429);
    /* the model failed (424), not the request: a server error */
    struct cmx_http_header m[] = {{"x-amzn-errortype", 16, "ModelErrorException", 19}};
    B->parse_error(424, m, 1, "{\"message\":\"model error\"}", 25, &a, &e);
    assert_string_equal(e.type, "server_error");
    assert_int_equal(e.status, 0);
    B->parse_error(500, NULL, 0, "<html>", 6, &a, &e);
    assert_non_null(e.message);
    cmx_arena_reset(&a);
}

/* ---- embeddings ------------------------------------------------------------------------------ */

static void test_embeddings_titan(void **state)
{
    struct cmx_deployment_cfg d = {.provider = &prov, .model = "amazon.titan-embed-text-v2:0"};
    struct req r;
    make_req(&r, CMX_EP_EMBEDDINGS,
             "{\"model\":\"e\",\"input\":[\"a\",\"b b\",\"c\"],\"dimensions\":256}");
    size_t n;
    void *st;
    const char *why = NULL;
    assert_int_equal(B->parts(&d, &r.cr, &r.a, &n, &st, &why), 0);
    assert_int_equal(n, 3);
    struct cmx_provider_req pr[3];
    for (size_t i = 0; i < 3; i++) {
        memset(&pr[i], 0, sizeof(pr[i]));
        assert_int_equal(B->build_part(&d, &r.cr, st, i, &r.a, &pr[i], &why), 0);
        assert_string_equal(pr[i].url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                                       "amazon.titan-embed-text-v2%3A0/invoke");
    }
    assert_json_eq(pr[1].body, pr[1].body_len,
                   "{\"inputText\":\"b b\",\"dimensions\":256,\"normalize\":true}");
    /* the answers in part order, as Titan sends them */
    struct cmx_part_answer ans[3] = {
        {"{\"embedding\":[0.5,-1.25],\"inputTextTokenCount\":1}", 0, NULL, 0},
        {"{\"embedding\":[1,2],\"inputTextTokenCount\":2}", 0, NULL, 0},
        {"{\"embedding\":[0.1,0.2],\"inputTextTokenCount\":1,\"embeddingsByType\":{}}", 0, NULL, 0},
    };
    for (size_t i = 0; i < 3; i++)
        ans[i].len = strlen(ans[i].body);
    struct cmx_buf out;
    cmx_buf_init(&out, 1u << 20);
    assert_int_equal(B->assemble(&d, &r.cr, st, ans, 3, &r.a, &out), 0);
    assert_json_eq(out.data, out.len,
                   "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                   "\"embedding\":[0.5,-1.25]},{\"object\":\"embedding\",\"index\":1,\"embedding\":"
                   "[1,2]},{\"object\":\"embedding\",\"index\":2,\"embedding\":[0.1,0.2]}],"
                   "\"model\":\"amazon.titan-embed-text-v2:0\",\"usage\":{\"prompt_tokens\":4,"
                   "\"total_tokens\":4}}");
    assert_non_null(strstr(out.data, "[0.1,0.2]")); /* numbers kept as sent */
    cmx_buf_free(&out);
    cmx_arena_reset(&r.a);

    /* base64: little-endian float32 */
    make_req(&r, CMX_EP_EMBEDDINGS,
             "{\"model\":\"e\",\"input\":\"a\",\"encoding_format\":\"base64\"}");
    assert_int_equal(B->parts(&d, &r.cr, &r.a, &n, &st, &why), 0);
    assert_int_equal(n, 1);
    struct cmx_part_answer one = {"{\"embedding\":[1.0,-2.0],\"inputTextTokenCount\":1}", 0, NULL,
                                  0};
    one.len = strlen(one.body);
    cmx_buf_init(&out, 1u << 20);
    assert_int_equal(B->assemble(&d, &r.cr, st, &one, 1, &r.a, &out), 0);
    /* 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 */
    assert_non_null(strstr(out.data, "\"embedding\":\"AACAPwAAAMA=\""));
    cmx_buf_free(&out);
    /* a broken part answer fails the whole attempt */
    struct cmx_part_answer broken = {"{\"embedding\":\"x\"}", 17, NULL, 0};
    cmx_buf_init(&out, 1u << 20);
    assert_int_not_equal(B->assemble(&d, &r.cr, st, &broken, 1, &r.a, &out), 0);
    cmx_buf_free(&out);
    cmx_arena_reset(&r.a);

    static const char *const bad_inputs[] = {
        "{\"model\":\"e\",\"input\":[1,2]}", "{\"model\":\"e\",\"input\":[]}",
        "{\"model\":\"e\",\"input\":\"\"}", "{\"model\":\"e\"}",
        "{\"model\":\"e\",\"input\":\"a\",\"encoding_format\":\"int8\"}"};
    for (size_t i = 0; i < 5; i++) {
        make_req(&r, CMX_EP_EMBEDDINGS, bad_inputs[i]);
        assert_int_equal(B->parts(&d, &r.cr, &r.a, &n, &st, &why), CMX_EINVAL);
        cmx_arena_reset(&r.a);
    }
    /* chat requests are not fanned out */
    make_req(&r, CMX_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}");
    assert_int_equal(B->parts(&dep, &r.cr, &r.a, &n, &st, &why), 0);
    assert_int_equal(n, 0);
    cmx_arena_reset(&r.a);
}

static void test_embeddings_cohere(void **state)
{
    struct cmx_deployment_cfg d = {.provider = &prov, .model = "cohere.embed-english-v3"};
    struct cmx_buf body;
    cmx_buf_init(&body, 1u << 20);
    cmx_buf_puts(&body, "{\"model\":\"e\",\"input\":[");
    for (int i = 0; i < 200; i++)
        cmx_buf_printf(&body, "%s\"t%d\"", i ? "," : "", i);
    cmx_buf_puts(&body, "]}");
    struct req r;
    make_req(&r, CMX_EP_EMBEDDINGS, body.data);
    size_t n;
    void *st;
    const char *why = NULL;
    assert_int_equal(B->parts(&d, &r.cr, &r.a, &n, &st, &why), 0);
    assert_int_equal(n, 3); /* 96 + 96 + 8 */
    struct cmx_provider_req pr = {0};
    assert_int_equal(B->build_part(&d, &r.cr, st, 2, &r.a, &pr, &why), 0);
    assert_json_eq(pr.body, pr.body_len,
                   "{\"texts\":[\"t192\",\"t193\",\"t194\",\"t195\",\"t196\",\"t197\",\"t198\","
                   "\"t199\"],\"input_type\":\"search_document\",\"embedding_types\":[\"float\"]}");
    struct cmx_http_header h = {"x-amzn-bedrock-input-token-count", 32, "5", 1};
    struct cmx_buf a[3];
    struct cmx_part_answer ans[3];
    for (int p = 0; p < 3; p++) {
        cmx_buf_init(&a[p], 1u << 20);
        int cnt = p < 2 ? 96 : 8;
        cmx_buf_puts(
            &a[p],
            "{\"id\":\"x\",\"response_type\":\"embeddings_by_type\",\"embeddings\":{\"float\":[");
        for (int k = 0; k < cnt; k++)
            cmx_buf_printf(&a[p], "%s[%d.5]", k ? "," : "", p * 96 + k);
        cmx_buf_puts(&a[p], "]},\"texts\":[]}");
        ans[p] = (struct cmx_part_answer){a[p].data, a[p].len, &h, 1};
    }
    struct cmx_buf out;
    cmx_buf_init(&out, 1u << 20);
    assert_int_equal(B->assemble(&d, &r.cr, st, ans, 3, &r.a, &out), 0);
    json_object *o = json_tokener_parse(out.data);
    json_object *data = json_object_object_get(o, "data");
    assert_int_equal(json_object_array_length(data), 200);
    for (int i = 0; i < 200; i++) {
        json_object *e = json_object_array_get_idx(data, i);
        assert_int_equal(json_object_get_int(json_object_object_get(e, "index")), i);
        double v = json_object_get_double(
            json_object_array_get_idx(json_object_object_get(e, "embedding"), 0));
        assert_true(v == i + 0.5);
    }
    assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(o, "usage"),
                                                                "prompt_tokens")),
                     15);
    json_object_put(o);
    /* a part with the wrong number of vectors */
    ans[2].len = (size_t)(strstr(a[2].data, "[1") - a[2].data); /* truncated JSON */
    cmx_buf_reset(&out);
    assert_int_not_equal(B->assemble(&d, &r.cr, st, ans, 3, &r.a, &out), 0);
    for (int p = 0; p < 3; p++)
        cmx_buf_free(&a[p]);
    cmx_buf_free(&out);
    cmx_buf_free(&body);
    cmx_arena_reset(&r.a);

    /* other models: a clear 400 */
    struct cmx_deployment_cfg other = {.provider = &prov, .model = "meta.llama3-8b-instruct-v1:0"};
    make_req(&r, CMX_EP_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"x\"}");
    assert_int_equal(B->parts(&other, &r.cr, &r.a, &n, &st, &why), CMX_EINVAL);
    assert_non_null(strstr(why, "Titan"));
    cmx_arena_reset(&r.a);
}

/* ---- config ---------------------------------------------------------------------------------- */

static struct cmx_config *load(const char *yaml, struct cmx_config_diag *diag)
{
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(diag);
    cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, diag);
    return cfg;
}

#define MODELS "models:\n  - name: m\n    deployments:\n      - provider: aws\n        model: x\n"

static void test_config(void **state)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_BEARER_TOKEN_BEDROCK");
    struct cmx_config_diag diag;
    struct cmx_config *cfg =
        load("providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: eu-west-3\n"
             "    access_key_id: AKID\n    secret_access_key: SECRETKEY\n"
             "    session_token: TOK\n" MODELS,
             &diag);
    assert_non_null(cfg);
    const struct cmx_provider_cfg *p = cmx_config_find_provider(cfg, "aws");
    assert_string_equal(p->base_url, "https://bedrock-runtime.eu-west-3.amazonaws.com");
    assert_string_equal(p->session_token, "TOK");
    assert_int_equal(p->type, CMX_PROVIDER_BEDROCK);
    assert_string_equal(cmx_provider_type_name(p->type), "bedrock");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&diag);

    /* endpoint override; a Bedrock API key alone */
    cfg =
        load("providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: us-east-1\n"
             "    endpoint: http://127.0.0.1:9999/\n    api_key: bk\n" MODELS,
             &diag);
    assert_non_null(cfg);
    p = cmx_config_find_provider(cfg, "aws");
    assert_string_equal(p->base_url, "http://127.0.0.1:9999");
    assert_string_equal(p->api_key, "bk");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&diag);

    /* a profile from the shared credentials file */
    char path[] = "/tmp/cmx-aws-credsXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *ini = "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n"
                      "[work]\n# comment\naws_access_key_id=WK\naws_secret_access_key = WS\n"
                      "aws_session_token = WT\n";
    assert_int_equal(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    cfg =
        load("providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: us-east-1\n"
             "    profile: work\n" MODELS,
             &diag);
    assert_non_null(cfg);
    p = cmx_config_find_provider(cfg, "aws");
    assert_string_equal(p->access_key_id, "WK");
    assert_string_equal(p->secret_access_key, "WS");
    assert_string_equal(p->session_token, "WT");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&diag);
    /* AWS_PROFILE and AWS_REGION from the environment */
    setenv("AWS_PROFILE", "default", 1);
    setenv("AWS_REGION", "ap-south-1", 1);
    cfg = load("providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n" MODELS, &diag);
    assert_non_null(cfg);
    p = cmx_config_find_provider(cfg, "aws");
    assert_string_equal(p->access_key_id, "D");
    assert_string_equal(p->region, "ap-south-1");
    assert_null(p->session_token);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&diag);
    /* a missing profile */
    cfg = load(
        "providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    profile: nope\n" MODELS,
        &diag);
    assert_null(cfg);
    assert_non_null(strstr(diag.text.data, "AWS profile \"nope\" has no keys"));
    cmx_config_diag_free(&diag);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unlink(path);

    static const char *const errors[][2] = {
        {"providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    access_key_id: A\n"
         "    secret_access_key: S\n" MODELS,
         "missing required key \"region\" in provider \"aws\""},
        {"providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: "
         "us-east-1\n" MODELS,
         "has no AWS credentials"},
        {"providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: us-east-1\n"
         "    access_key_id: A\n" MODELS,
         "access_key_id and secret_access_key go together"},
        {"providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: us-east-1\n"
         "    api_key: k\n    access_key_id: A\n    secret_access_key: S\n" MODELS,
         "not both"},
        {"providers:\n  - name: aws\n    type: bedrock\n    cloud: aws\n    region: US East\n"
         "    api_key: k\n" MODELS,
         "region must be an AWS region name"},
        {"providers:\n  - name: aws\n    type: openai\n    cloud: aws\n    api_key: k\n"
         "    endpoint: http://h\n" MODELS,
         "missing required key \"base_url\" in provider \"aws\""},
        {"providers:\n  - name: aws\n    type: openai\n    cloud: aws\n    api_key: k\n"
         "    base_url: http://h\n    endpoint: http://h\n" MODELS,
         "endpoint is only valid for types vertex and bedrock"},
        {"providers:\n  - name: aws\n    type: openai\n    cloud: aws\n    api_key: k\n"
         "    base_url: http://h\n    access_key_id: AKIDEXAMPLE\n" MODELS,
         "provider \"aws\".access_key_id is only valid for type bedrock"},
    };
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        cfg = load(errors[i][0], &diag);
        assert_null(cfg);
        if (strstr(diag.text.data, errors[i][1]) == NULL)
            print_error("row %zu: %s\n", i, diag.text.data);
        assert_non_null(strstr(diag.text.data, errors[i][1]));
        /* never a secret in a message */
        assert_null(strstr(diag.text.data, "SECRETKEY"));
        cmx_config_diag_free(&diag);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_request_rejected),
        cmocka_unit_test(test_url_and_signature),
        cmocka_unit_test(test_response_fixtures),
        cmocka_unit_test(test_response_table),
        cmocka_unit_test(test_stream_fixtures),
        cmocka_unit_test(test_stream_exception),
        cmocka_unit_test(test_stream_corrupt_and_truncated),
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_embeddings_titan),
        cmocka_unit_test(test_embeddings_cohere),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
