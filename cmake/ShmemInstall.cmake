# SPDX-License-Identifier: LGPL-2.1-or-later
# Where `cmake --install` puts things, in one place. Every destination is
# relative to the install prefix unless a distribution asks otherwise, so
# `cmake --install build --prefix DIR` and DESTDIR=... put the whole tree
# under DIR. Files that name installed paths (the unit's ExecStart=, the
# .pc's prefix) are written at install time, naming the prefix used then.

# systemd's directories (systemd.pc) relative to the prefix. systemd.pc
# spells them in its prefix (/usr) and root prefix (Debian 12: "", so the
# units go to /lib/systemd/system): for systemd's own prefix they are used
# as it says, for any other the same layout goes under that prefix. Without
# systemd.pc, the layout systemd uses under any prefix.
function(shmem_systemd_dir var pcvar fallback)
  set(dir ${fallback})
  if(PKG_CONFIG_EXECUTABLE)
    execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=prefix systemd
                    OUTPUT_VARIABLE sd_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
    execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --define-variable=prefix=/@P@
                            --define-variable=root_prefix=/@R@ --define-variable=rootprefix=/@R@
                            --variable=${pcvar} systemd
                    OUTPUT_VARIABLE v OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(rc EQUAL 0 AND v MATCHES "^/@[PR]@/(.+)$")
      set(dir ${CMAKE_MATCH_1})
      if(v MATCHES "^/@R@/" AND CMAKE_INSTALL_PREFIX STREQUAL sd_prefix)
        execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=rootprefix systemd
                        OUTPUT_VARIABLE sd_root OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
        set(dir ${sd_root}/${dir})
      endif()
    endif()
  endif()
  set(${var} ${dir} CACHE STRING "Where the ${pcvar} files go (relative: to the install prefix)")
endfunction()

shmem_systemd_dir(SHMEM_SYSTEMDUNITDIR systemd_system_unit_dir lib/systemd/system)
shmem_systemd_dir(SHMEM_SYSUSERSDIR sysusers_dir lib/sysusers.d)
shmem_systemd_dir(SHMEM_TMPFILESDIR tmpfiles_dir lib/tmpfiles.d)
shmem_systemd_dir(SHMEM_CATALOGDIR catalog_dir lib/systemd/catalog)

# bash-completion's completionsdir (bash-completion.pc), relative to the
# prefix as the systemd directories are: the .pc spells it under its own
# prefix (Debian 12: /usr/share/bash-completion/completions), and the part
# under that prefix goes under ours: bash-completion's loader finds it for
# its own prefix, and for another through XDG_DATA_DIRS=PREFIX/share. Without
# bash-completion.pc, that layout.
set(dir share/bash-completion/completions)
if(PKG_CONFIG_EXECUTABLE)
  execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=prefix bash-completion
                  OUTPUT_VARIABLE bc_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
  execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=completionsdir bash-completion
                  OUTPUT_VARIABLE bc_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0 AND bc_prefix AND bc_dir MATCHES "^${bc_prefix}/(.+)$")
    set(dir ${CMAKE_MATCH_1})
  endif()
endif()
set(SHMEM_BASHCOMPLETIONDIR ${dir} CACHE STRING "Where bash completions go (relative: to the install prefix)")

# shmem_install_configured(TEMPLATE DESTINATION [RENAME NAME]): TEMPLATE
# (NAME.in) configured when installing, with @PREFIX@ the prefix of that
# install and @BINDIR@ @SBINDIR@ @LIBDIR@ @INCLUDEDIR@ @LIBEXECDIR@ the
# absolute directories under it, then installed to DESTINATION.
function(shmem_install_configured template destination)
  get_filename_component(name ${template} NAME_WLE)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/install-time/${name})
  set(code "set(PREFIX \"\${CMAKE_INSTALL_PREFIX}\")\nset(PROJECT_VERSION \"${PROJECT_VERSION}\")\n")
  foreach(d BINDIR SBINDIR LIBDIR INCLUDEDIR LIBEXECDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
      string(APPEND code "set(${d} \"${CMAKE_INSTALL_${d}}\")\n")
    else()
      string(APPEND code "set(${d} \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_${d}}\")\n")
    endif()
  endforeach()
  string(APPEND code "configure_file(\"${CMAKE_CURRENT_SOURCE_DIR}/${template}\" \"${out}\" @ONLY)\n")
  install(CODE "${code}")
  install(FILES ${out} DESTINATION ${destination} ${ARGN})
endfunction()
