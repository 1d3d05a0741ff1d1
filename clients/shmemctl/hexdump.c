/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <string.h>

#include "hexdump.h"

void hexdump_init(Hexdump *h, FILE *f, uint64_t offset) {
        *h = (Hexdump) { .f = f, .offset = offset };
}

static void hexdump_line(Hexdump *h) {
        bool full = h->n == HEXDUMP_LINE;

        if (full && h->have_prev && memcmp(h->line, h->prev, HEXDUMP_LINE) == 0) {
                if (!h->starred)
                        fputs("*\n", h->f);
                h->starred = true;
        } else {
                fprintf(h->f, "%08" PRIx64 " ", h->offset);
                for (size_t i = 0; i < HEXDUMP_LINE; i++) {
                        if (i % 8 == 0)
                                fputc(' ', h->f);
                        if (i < h->n)
                                fprintf(h->f, "%02x ", h->line[i]);
                        else
                                fputs("   ", h->f);
                }
                fputs(" |", h->f);
                for (size_t i = 0; i < h->n; i++)
                        fputc(h->line[i] >= 0x20 && h->line[i] < 0x7f ? h->line[i] : '.', h->f);
                fputs("|\n", h->f);
                h->starred = false;
        }
        if (full) {
                memcpy(h->prev, h->line, HEXDUMP_LINE);
                h->have_prev = true;
        }
        h->offset += h->n;
        h->n = 0;
}

void hexdump_feed(Hexdump *h, const void *p, size_t n) {
        const uint8_t *b = p;

        while (n > 0) {
                size_t k = HEXDUMP_LINE - h->n < n ? HEXDUMP_LINE - h->n : n;

                memcpy(h->line + h->n, b, k);
                h->n += k;
                b += k;
                n -= k;
                if (h->n == HEXDUMP_LINE)
                        hexdump_line(h);
        }
}

void hexdump_end(Hexdump *h) {
        if (h->n > 0)
                hexdump_line(h);
        fprintf(h->f, "%08" PRIx64 "\n", h->offset);
}
