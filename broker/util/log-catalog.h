/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The MESSAGE_ID= of the broker's key events: fixed 128-bit ids, each
 * described in systemd/shmem-broker.catalog (installed to journald's catalog
 * directory: `journalctl -x` shows the text) and listed in docs/systemd.md.
 * An id names a kind of event for good: never reuse one for another meaning.
 */

#define LOG_MID_BROKER_STARTED "ec13ebdb5c654c33b2f184efac43c113"
#define LOG_MID_BROKER_RESTORED "7509f8fb6c914ed7ae7e683d83817193"
#define LOG_MID_BROKER_UPGRADING "6f187aae750a477199cc76e3684e87f8"
#define LOG_MID_REGION_CREATED "d05d64c2419e4a9cbb6f33f451300c42"
#define LOG_MID_REGION_DESTROYED "7487fe20063e4e148c1285479c2a71b9"
#define LOG_MID_PEER_ATTACHED "b99b77873edf47c5b426628c1c8df7ef"
#define LOG_MID_PEER_DETACHED "f6a223fcece74987b17fba7e479ba368"
#define LOG_MID_PEER_DROPPED "2a27c6b5b4cf4c9da0627d0f8c028ca9"
#define LOG_MID_LIMIT_REFUSED "1b3c1d9f23b5460d966c2a466713c889"
