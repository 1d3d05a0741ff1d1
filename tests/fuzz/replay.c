/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fuzz targets without libFuzzer: each input of the corpus directories
 * given, once, in name order. The ordinary build links every target with
 * this main and replays the tree's corpus as a unit test (unit-fuzz-replay-*),
 * so a target that no longer compiles, or a regression input that fails
 * again, is caught by the tests a change runs, not only by scripts/fuzz.sh.
 *
 *     replay-TARGET DIR|FILE...
 */

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
        uint8_t *data = NULL;
        size_t size = 0;
        FILE *f = fopen(path, "rb");
        long end;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (end = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
                fprintf(stderr, "%s: cannot seek\n", path);
                fclose(f);
                return -1;
        }
        size = (size_t) end;
        /* One byte more, so that an empty input has a buffer too, as under libFuzzer. */
        data = malloc(size + 1);
        if (!data || fread(data, 1, size, f) != size) {
                fprintf(stderr, "%s: cannot read\n", path);
                free(data);
                fclose(f);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
        unsigned n = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                struct dirent **names;
                struct stat st;
                int k;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(argv[i]) < 0)
                                return 1;
                        n++;
                        continue;
                }
                k = scandir(argv[i], &names, NULL, by_name);
                if (k < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                for (int j = 0; j < k; j++) {
                        char path[4096];
                        int r = 0;

                        if (names[j]->d_name[0] != '.') {
                                snprintf(path, sizeof(path), "%s/%s", argv[i], names[j]->d_name);
                                r = replay_file(path);
                                n++;
                        }
                        free(names[j]);
                        if (r < 0) {
                                free(names);
                                return 1;
                        }
                }
                free(names);
        }
        /* An empty corpus proves nothing: say so rather than pass. */
        if (n == 0) {
                fprintf(stderr, "%s: no inputs\n", argv[0]);
                return 1;
        }
        printf("%u inputs replayed\n", n);
        return 0;
}
