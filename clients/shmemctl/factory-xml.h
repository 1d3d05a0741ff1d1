/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* factory-xml: `shmemctl xml --factory [DOMAIN]` (factory-xml.c). Exit codes and Args: common.h. */

#include "common.h"

/* The factory device and root ports a domain needs; @domain NULL: for a new definition. */
int cmd_factory_xml(const Args *a, const char *domain);

#define FACTORY_XML_REGIONS_DEFAULT 4
#define FACTORY_XML_REGIONS_MAX 64
