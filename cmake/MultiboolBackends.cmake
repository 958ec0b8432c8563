# Finds the SIMD libraries behind the optional backends and says in the configure log which
# backends are on. Each enabled one becomes a usage requirement of multibool::multibool.
set(MULTIBOOL_HAS_HIGHWAY OFF)
set(MULTIBOOL_HAS_XSIMD OFF)

if(MULTIBOOL_WITH_HIGHWAY)
    find_package(hwy QUIET)
    if(hwy_FOUND)
        set(MULTIBOOL_HAS_HIGHWAY ON)
        target_link_libraries(multibool INTERFACE hwy::hwy)
        target_compile_definitions(multibool INTERFACE MULTIBOOL_HAS_HIGHWAY=1)
    endif()
endif()

# The opt-in dynamic-dispatch unit (docs/DYNAMIC_DISPATCH.md): a static library
# compiled without -march flags, so Highway builds every x86 target and picks one at run time.
include(CMakeDependentOption)
cmake_dependent_option(MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH
    "Build multibool::highway_dynamic, the Highway dynamic-dispatch library of HighwayDynamicLookupBackend"
    ON "MULTIBOOL_HAS_HIGHWAY" OFF)
if(MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH)
    # Built by default only in this project's own build; a parent project builds it when it links it.
    if(PROJECT_IS_TOP_LEVEL)
        add_library(multibool_highway_dynamic STATIC)
    else()
        add_library(multibool_highway_dynamic STATIC EXCLUDE_FROM_ALL)
    endif()
    add_library(multibool::highway_dynamic ALIAS multibool_highway_dynamic)
    # The unit is a header (everything under include/ is a header); its one translation unit is this.
    set(unit_source ${PROJECT_BINARY_DIR}/multibool_highway_dynamic.cpp)
    file(CONFIGURE OUTPUT ${unit_source} CONTENT "#include <multibool/backends/highway_dynamic_dispatch_unit.hpp>\n")
    target_sources(multibool_highway_dynamic PRIVATE ${unit_source})
    # No -march flag and no HWY_COMPILE_ONLY_STATIC (multibool_development is not linked on purpose).
    target_link_libraries(multibool_highway_dynamic PUBLIC multibool hwy::hwy)
    set_target_properties(multibool_highway_dynamic PROPERTIES EXPORT_NAME highway_dynamic POSITION_INDEPENDENT_CODE ON)
endif()

if(MULTIBOOL_WITH_XSIMD)
    # xsimd 8.1's exported target names xtl as a link library: find xtl first.
    find_package(xtl QUIET)
    if(xtl_FOUND)
        find_package(xsimd QUIET)
    endif()
    if(xsimd_FOUND)
        set(MULTIBOOL_HAS_XSIMD ON)
        target_link_libraries(multibool INTERFACE xsimd)
        target_compile_definitions(multibool INTERFACE MULTIBOOL_HAS_XSIMD=1)
    endif()
endif()

message(STATUS "multibool: scalar backend: enabled (reference)")
if(MULTIBOOL_HAS_HIGHWAY)
    message(STATUS "multibool: Highway backend: enabled (hwy ${hwy_VERSION})")
else()
    message(STATUS "multibool: Highway backend: disabled (MULTIBOOL_WITH_HIGHWAY=${MULTIBOOL_WITH_HIGHWAY}, hwy not found or not wanted; apt-get install libhwy-dev)")
endif()
if(MULTIBOOL_HIGHWAY_DYNAMIC_DISPATCH)
    message(STATUS "multibool: Highway dynamic dispatch: enabled (multibool::highway_dynamic)")
endif()
if(MULTIBOOL_HAS_XSIMD)
    message(STATUS "multibool: xsimd backend: enabled (xsimd ${xsimd_VERSION})")
else()
    message(STATUS "multibool: xsimd backend: disabled (MULTIBOOL_WITH_XSIMD=${MULTIBOOL_WITH_XSIMD}, xsimd/xtl not found or not wanted; apt-get install libxsimd-dev xtl-dev)")
endif()
