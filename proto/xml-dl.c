/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* xml-dl: libxml2.so.2 opened and its symbols resolved when first needed (xml-dl.h). */
#define XML_DL_IMPL
#include <dlfcn.h>
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "xml-dl.h"

#define XML_DL_DEFINE(s) __typeof__(s) *sym_##s;
XML_DL_SYMBOLS(XML_DL_DEFINE)
#undef XML_DL_DEFINE

static const struct {
        const char *name;
        void **ptr;
} symbols[] = {
#define XML_DL_ENTRY(s) { #s, (void **) &sym_##s },
        XML_DL_SYMBOLS(XML_DL_ENTRY)
#undef XML_DL_ENTRY
};

int xml_dl_open(void) {
        static int result = 1; /* 1: not tried yet */
        void *dl;

        if (result <= 0)
                return result;
        /* Kept open for the life of the process: what it parsed is freed through it. */
        dl = dlopen(XML_DL_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return result = -ELIBACC;
        for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
                *symbols[i].ptr = dlsym(dl, symbols[i].name);
                if (!*symbols[i].ptr) {
                        dlclose(dl);
                        for (size_t k = 0; k < sizeof(symbols) / sizeof(symbols[0]); k++)
                                *symbols[k].ptr = NULL;
                        return result = -ELIBACC;
                }
        }
        return result = 0;
}
