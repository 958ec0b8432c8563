# Settings for this repository's own tests, benchmarks and examples; never applied to consumers.
add_library(multibool_development INTERFACE)
target_link_libraries(multibool_development INTERFACE multibool::multibool)
target_compile_options(multibool_development INTERFACE -Wall -Wextra -Wpedantic)
if(MULTIBOOL_NATIVE)
    target_compile_options(multibool_development INTERFACE -march=native)
    # Highway 1.0.3 refuses -march=native on this CPU family unless only the static target is compiled.
    target_compile_definitions(multibool_development INTERFACE HWY_COMPILE_ONLY_STATIC=1)
endif()
target_compile_definitions(multibool_development INTERFACE MULTIBOOL_DEFAULT_ASSETS="${MULTIBOOL_ASSETS}")

find_program(MULTIBOOL_CCACHE ccache)
if(MULTIBOOL_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
    set(CMAKE_CXX_COMPILER_LAUNCHER ${MULTIBOOL_CCACHE})
endif()
