/* Option parsing shared by the subcommands. */
#include "cli/cli.h"

#include <string.h>

int cmx_cli_opt(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strcmp(a, name) == 0) {
        /* "--period --config F": the value is missing, not "--config" */
        if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)
            return -1;
        *out = argv[++*i];
        return 1;
    }
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    return 0;
}
