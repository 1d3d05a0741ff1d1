/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "error.h"
#include "macro.h"

const char *core_error_name(int e) {
        static const char *const names[CORE_E_MAX] = {
                [CORE_E_CLIENT_MAX] = "client-max",   [CORE_E_ILLEGAL_NAME] = "illegal-name",
                [CORE_E_NO_PERMISSION] = "no-permission", [CORE_E_NOT_FOUND] = "does-not-exist",
                [CORE_E_EXISTS] = "exists",           [CORE_E_BAD_SIZE] = "bad-size",
                [CORE_E_LIMIT] = "limit",             [CORE_E_BUSY] = "busy",
                [CORE_E_INVALID] = "invalid",         [CORE_E_NOMEM] = "nomem",
        };

        return e > 0 && e < CORE_E_MAX && names[e] ? names[e] : "?";
}
