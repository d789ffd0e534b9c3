/* OpenAI's own API and OpenAI-compatible servers (vLLM, llama.cpp, Ollama, ...): the
 * client's body goes through with only "model" and "stream_options" rewritten. */
#include "providers/provider.h"
#include "core/err.h"

#include <string.h>

static int build(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why)
{
    const struct cmx_provider_cfg *p = d->provider;
    out->method = "POST";
    out->url =
        cmx_url_join(a, p->base_url, cr->ep == CMX_EP_CHAT ? "chat/completions" : "embeddings");
    if (out->url == NULL)
        return CMX_ENOMEM;
    if (cmx_openai_headers(out, cr, a, "Authorization: Bearer ", p->api_key,
                           "X-Client-Request-Id") != 0)
        return CMX_ENOMEM;
    return cmx_openai_rewrite_body(cr, d->model, a, &out->body, &out->body_len);
}

const struct cmx_provider_ops cmx_provider_openai = {
    .name = "openai",
    .build = build,
    .stream_new = cmx_openai_stream_new,
    .stream_feed = cmx_openai_stream_feed,
    .stream_finish = cmx_openai_stream_finish,
    .stream_free = cmx_openai_stream_free,
    .translate = NULL,
    .parse_error = cmx_openai_parse_error,
};

const struct cmx_provider_ops cmx_provider_openai_compatible = {
    .name = "openai_compatible",
    .build = build,
    .stream_new = cmx_openai_stream_new,
    .stream_feed = cmx_openai_stream_feed,
    .stream_finish = cmx_openai_stream_finish,
    .stream_free = cmx_openai_stream_free,
    .translate = NULL,
    .parse_error = cmx_openai_parse_error,
};

const struct cmx_provider_ops *cmx_provider_ops_for(enum cmx_provider_type type)
{
    switch (type) {
    case CMX_PROVIDER_OPENAI:
        return &cmx_provider_openai;
    case CMX_PROVIDER_AZURE_OPENAI:
        return &cmx_provider_azure_openai;
    case CMX_PROVIDER_OPENAI_COMPATIBLE:
        return &cmx_provider_openai_compatible;
    case CMX_PROVIDER_BEDROCK:
        return &cmx_provider_bedrock;
    case CMX_PROVIDER_ANTHROPIC:
        return &cmx_provider_anthropic;
    case CMX_PROVIDER_VERTEX:
        return &cmx_provider_vertex;
    }
    return &cmx_provider_openai_compatible;
}
