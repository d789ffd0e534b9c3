/* cloudmux reload: ask a running gateway to re-read its configuration, either by signal
 * (SIGHUP to --pid or the pid in --pidfile) or through its admin API (--url). */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_signal(long pid)
{
    if (pid <= 1) {
        fprintf(stderr, "cloudmux reload: invalid pid %ld\n", pid);
        return 1;
    }
    if (kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "cloudmux reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("reload requested (SIGHUP sent to pid %ld)\n", pid);
    return 0;
}

static int read_pidfile(const char *path, long *pid)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "cloudmux reload: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    int n = fscanf(f, "%ld", pid);
    fclose(f);
    if (n != 1) {
        fprintf(stderr, "cloudmux reload: %s holds no pid\n", path);
        return 1;
    }
    return 0;
}

static int by_url(const char *base, const char *admin_key)
{
    char url[2048];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof(url), "%.*s/admin/v1/reload", (int)bl, base);
    CURL *e = curl_easy_init();
    if (e == NULL)
        return 1;
    struct curl_slist *h = NULL;
    char auth[1024];
    if (admin_key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin_key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fwrite);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, stdout);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        fprintf(stderr, "cloudmux reload: %s: %s\n", url, curl_easy_strerror(rc));
        return 1;
    }
    putchar('\n');
    if (status != 202 && status != 200) {
        fprintf(stderr, "cloudmux reload: %s answered HTTP %ld\n", url, status);
        return 1;
    }
    return 0;
}

int cmx_cli_reload(int argc, char **argv)
{
    const char *pidfile = NULL, *url = NULL, *pid = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--pid") == 0 && v)
            pid = v, i++;
        else if (strcmp(a, "--pidfile") == 0 && v)
            pidfile = v, i++;
        else if (strcmp(a, "--url") == 0 && v)
            url = v, i++;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cmx_cli_usage("reload"), stdout);
            return 0;
        } else {
            fprintf(stderr, "cloudmux reload: unexpected argument '%s'\n%s", a,
                    cmx_cli_usage("reload"));
            return 2;
        }
    }
    if ((pid != NULL) + (pidfile != NULL) + (url != NULL) != 1) {
        fprintf(stderr, "cloudmux reload: give exactly one of --pid, --pidfile, --url\n%s",
                cmx_cli_usage("reload"));
        return 2;
    }
    if (url != NULL)
        return by_url(url, getenv("CLOUDMUX_ADMIN_KEY"));
    long n;
    if (pidfile != NULL) {
        if (read_pidfile(pidfile, &n) != 0)
            return 1;
    } else {
        char *end;
        n = strtol(pid, &end, 10);
        if (*end != '\0') {
            fprintf(stderr, "cloudmux reload: --pid needs a number\n");
            return 2;
        }
    }
    return by_signal(n);
}
