# The OMNeT++ simple modules (omnetpp/modules) as a shared library for opp_run, built only
# where OMNeT++ is found: OMNETPP_ROOT (environment or -D), or opp_run on PATH.
set(OMNETPP_ROOT "$ENV{OMNETPP_ROOT}" CACHE PATH "OMNeT++ installation (empty: look for opp_run on PATH)")
# A later OMNETPP_ROOT in the environment wins over the cached value (a build directory
# configured before OMNeT++ was installed picks it up on the next configure).
if(NOT "$ENV{OMNETPP_ROOT}" STREQUAL "" AND NOT "$ENV{OMNETPP_ROOT}" STREQUAL "${OMNETPP_ROOT}")
  set(OMNETPP_ROOT "$ENV{OMNETPP_ROOT}" CACHE PATH "OMNeT++ installation (empty: look for opp_run on PATH)" FORCE)
endif()
if(NOT OMNETPP_ROOT)
  find_program(OPP_RUN_ON_PATH opp_run NO_CACHE)
  if(OPP_RUN_ON_PATH)
    get_filename_component(_opp_bin "${OPP_RUN_ON_PATH}" REALPATH)
    get_filename_component(_opp_bin "${_opp_bin}" DIRECTORY)
    get_filename_component(OMNETPP_ROOT "${_opp_bin}/.." ABSOLUTE)
  endif()
endif()

if(NOT OMNETPP_ROOT OR NOT EXISTS "${OMNETPP_ROOT}/include/omnetpp.h" OR NOT EXISTS "${OMNETPP_ROOT}/bin/opp_msgc")
  message(STATUS "OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): skipping the OMNeT++ module build; "
                 "the framework-free core is still built and tested")
  set(MALCOLM_OMNETPP_FOUND OFF)
  return()
endif()

find_library(OPP_SIM_LIB oppsim PATHS "${OMNETPP_ROOT}/lib" NO_DEFAULT_PATH)
if(NOT OPP_SIM_LIB)
  message(STATUS "OMNeT++ at ${OMNETPP_ROOT} has no release liboppsim (build it with 'make MODE=release'): "
                 "skipping the OMNeT++ module build; the framework-free core is still built and tested")
  set(MALCOLM_OMNETPP_FOUND OFF)
  return()
endif()
set(MALCOLM_OMNETPP_FOUND ON)
message(STATUS "OMNeT++ found at ${OMNETPP_ROOT}: building the simple modules (libmalcolm_omnetpp)")

set(MSG_GEN_DIR "${CMAKE_CURRENT_BINARY_DIR}/msg")
set(FRAMES_MSG "${CMAKE_CURRENT_SOURCE_DIR}/modules/frames.msg")
# opp_msgc writes next to the .msg file: compile a copy in the build tree.
add_custom_command(
  OUTPUT "${MSG_GEN_DIR}/frames_m.cc" "${MSG_GEN_DIR}/frames_m.h"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${MSG_GEN_DIR}"
  COMMAND ${CMAKE_COMMAND} -E copy "${FRAMES_MSG}" "${MSG_GEN_DIR}/frames.msg"
  COMMAND ${CMAKE_COMMAND} -E env "PATH=${OMNETPP_ROOT}/bin:$ENV{PATH}" "${OMNETPP_ROOT}/bin/opp_msgc" -s _m.cc "${MSG_GEN_DIR}/frames.msg"
  DEPENDS "${FRAMES_MSG}"
  COMMENT "opp_msgc: frames.msg")

add_library(malcolm_omnetpp SHARED
  modules/EdfScheduler.cc modules/MalcolmApp.cc modules/TaskSource.cc modules/RoCEv2Nic.cc modules/TorSwitch.cc
  modules/IncastChannel.cc modules/BridgeCoordinator.cc "${MSG_GEN_DIR}/frames_m.cc")
target_include_directories(malcolm_omnetpp PRIVATE "${OMNETPP_ROOT}/include" "${CMAKE_CURRENT_SOURCE_DIR}/modules" "${MSG_GEN_DIR}")
target_link_libraries(malcolm_omnetpp PRIVATE malcolm_core "${OPP_SIM_LIB}")
target_compile_options(malcolm_omnetpp PRIVATE -Wall -Wno-unused-parameter)
set_target_properties(malcolm_omnetpp PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
