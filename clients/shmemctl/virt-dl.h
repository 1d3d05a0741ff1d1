/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * virt-dl: libvirt loaded at run time, by the commands that talk to it
 * (attach, detach, xml --factory DOMAIN) and by nothing else: linked, libvirt.so.0 and the ~57
 * libraries it needs were mapped and initialised by every shmemctl call
 * (docs/BENCHMARKS.md, "shmemctl start-up"). The build needs libvirt's
 * headers only (libvirt-dev), for the types and prototypes.
 *
 * virt.c calls libvirt by its own names: each one below is made a call
 * through the pointer virt_dl_open() resolves. shmemctl is not linked with
 * libvirt, so a libvirt function used without a line here is an undefined
 * reference at link time rather than a crash.
 */

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define VIRT_DL_SONAME "libvirt.so.0"

/* Every libvirt symbol shmemctl uses. */
#define VIRT_DL_SYMBOLS(X)                      \
        X(virConnectAuthPtrDefault)             \
        X(virConnectClose)                      \
        X(virConnectDomainEventDeregisterAny)   \
        X(virConnectDomainEventRegisterAny)     \
        X(virConnectOpenAuth)                   \
        X(virDomainAttachDeviceFlags)           \
        X(virDomainDetachDeviceFlags)           \
        X(virDomainFree)                        \
        X(virDomainGetUUIDString)               \
        X(virDomainGetXMLDesc)                  \
        X(virDomainIsActive)                    \
        X(virDomainLookupByName)                \
        X(virDomainLookupByUUIDString)          \
        X(virEventAddTimeout)                   \
        X(virEventRegisterDefaultImpl)          \
        X(virEventRemoveTimeout)                \
        X(virEventRunDefaultImpl)               \
        X(virGetLastErrorMessage)               \
        X(virSetErrorFunc)

#define VIRT_DL_DECLARE(s) extern __typeof__(s) *sym_##s;
VIRT_DL_SYMBOLS(VIRT_DL_DECLARE)
#undef VIRT_DL_DECLARE

/*
 * Loads libvirt and resolves every symbol, once; later calls return the
 * first one's result. 0, or -1 having said on stderr what is missing and
 * which package has it (libvirt0).
 */
int virt_dl_open(void);

#ifndef VIRT_DL_IMPL
#define virConnectAuthPtrDefault (*sym_virConnectAuthPtrDefault)
#define virConnectClose (*sym_virConnectClose)
#define virConnectDomainEventDeregisterAny (*sym_virConnectDomainEventDeregisterAny)
#define virConnectDomainEventRegisterAny (*sym_virConnectDomainEventRegisterAny)
#define virConnectOpenAuth (*sym_virConnectOpenAuth)
#define virDomainAttachDeviceFlags (*sym_virDomainAttachDeviceFlags)
#define virDomainDetachDeviceFlags (*sym_virDomainDetachDeviceFlags)
#define virDomainFree (*sym_virDomainFree)
#define virDomainGetUUIDString (*sym_virDomainGetUUIDString)
#define virDomainGetXMLDesc (*sym_virDomainGetXMLDesc)
#define virDomainIsActive (*sym_virDomainIsActive)
#define virDomainLookupByName (*sym_virDomainLookupByName)
#define virDomainLookupByUUIDString (*sym_virDomainLookupByUUIDString)
#define virEventAddTimeout (*sym_virEventAddTimeout)
#define virEventRegisterDefaultImpl (*sym_virEventRegisterDefaultImpl)
#define virEventRemoveTimeout (*sym_virEventRemoveTimeout)
#define virEventRunDefaultImpl (*sym_virEventRunDefaultImpl)
#define virGetLastErrorMessage (*sym_virGetLastErrorMessage)
#define virSetErrorFunc (*sym_virSetErrorFunc)
#endif
