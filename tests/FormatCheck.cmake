# Every C++ file of the repository is formatted as .clang-format says. Run as
# cmake -DROOT=<repository> -DCLANG_FORMAT=<clang-format> -P FormatCheck.cmake; fails naming the
# files that differ (fix them with: clang-format -i <files>).
file(GLOB_RECURSE files ${ROOT}/include/*.hpp ${ROOT}/tests/*.hpp ${ROOT}/tests/*.cpp ${ROOT}/bench/*.hpp
     ${ROOT}/bench/*.cpp ${ROOT}/examples/*.hpp ${ROOT}/examples/*.cpp)
set(unformatted "")
foreach(file ${files})
    execute_process(COMMAND ${CLANG_FORMAT} --dry-run -Werror ${file} RESULT_VARIABLE result OUTPUT_QUIET
                    ERROR_QUIET)
    if(NOT result EQUAL 0)
        file(RELATIVE_PATH relative ${ROOT} ${file})
        string(APPEND unformatted "\n  ${relative}")
    endif()
endforeach()
list(LENGTH files count)
if(unformatted)
    message(FATAL_ERROR "files that differ from .clang-format (clang-format -i them):${unformatted}")
endif()
message(STATUS "${count} files match .clang-format")
