/* libFuzzer target for the Anthropic stream decoder, answer translator and error parser
 * (src/providers/anthropic.c); see stream_fuzz_int.h. */
#include "stream_fuzz_int.h"

static struct cmx_provider_cfg prov = {
    .name = "a", .type = CMX_PROVIDER_ANTHROPIC, .base_url = "http://127.0.0.1:1", .api_key = "k"};
static struct cmx_deployment_cfg dep = {.provider = &prov, .model = "claude"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_provider(&cmx_provider_anthropic, &dep, data, size);
}
