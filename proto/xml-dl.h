/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * xml-dl: libxml2 for domain-xml.c, linked or loaded at run time. Built with
 * DOMAIN_XML_DLOPEN (shmemdomainxml-dl, shmemctl's), libxml2.so.2 is
 * dlopen()ed by the first domain_info_parse(), so that the shmemctl commands
 * that read no domain XML (all but xml --factory DOMAIN) neither link nor map
 * it and the libraries it pulls in (ICU, zlib, liblzma, libstdc++: 8 of
 * shmemctl's 13; docs/BENCHMARKS.md). Without it (shmemdomainxml: the
 * hotplug helper, the unit tests), libxml2 is linked as usual.
 *
 * domain-xml.c calls libxml2 by its own names; with DOMAIN_XML_DLOPEN each
 * below is made a call through the pointer xml_dl_open() resolved. Include
 * after libxml2's headers.
 */

#ifdef DOMAIN_XML_DLOPEN

#define XML_DL_SONAME "libxml2.so.2"

/* Every libxml2 symbol domain-xml.c uses; xmlFree is a variable, or with thread-local allocators
 * a macro around the function __xmlFree (libxml/globals.h). */
#ifdef LIBXML_THREAD_ALLOC_ENABLED
#define XML_DL_FREE(X) X(__xmlFree)
#else
#define XML_DL_FREE(X) X(xmlFree)
#endif
#define XML_DL_SYMBOLS(X)               \
        X(xmlDocGetRootElement)         \
        X(xmlFreeDoc)                   \
        X(xmlGetProp)                   \
        X(xmlReadMemory)                \
        XML_DL_FREE(X)

#define XML_DL_DECLARE(s) extern __typeof__(s) *sym_##s;
XML_DL_SYMBOLS(XML_DL_DECLARE)
#undef XML_DL_DECLARE

/* Loads libxml2 and resolves every symbol, once: 0, or -ELIBACC (later calls say the same). */
int xml_dl_open(void);

#ifndef XML_DL_IMPL
#define xmlDocGetRootElement (*sym_xmlDocGetRootElement)
#define xmlFreeDoc (*sym_xmlFreeDoc)
#define xmlGetProp (*sym_xmlGetProp)
#define xmlReadMemory (*sym_xmlReadMemory)
#undef xmlFree
#ifdef LIBXML_THREAD_ALLOC_ENABLED
#define xmlFree (*((*sym___xmlFree)()))
#else
#define xmlFree (*sym_xmlFree)
#endif
#endif

#else

static inline int xml_dl_open(void) {
        return 0;
}

#endif
