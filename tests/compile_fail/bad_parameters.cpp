// Compiled by CTest with -DMULTIBOOL_CASE=N; every case but 0 must fail with a readable static_assert.
#include <multibool/core/bit_plane_matrix.hpp>

#if MULTIBOOL_CASE == 0
template class multibool::BitPlaneMatrix<8, 128, double, unsigned char>;
#elif MULTIBOOL_CASE == 1
template class multibool::BitPlaneMatrix<0, 128>;
#elif MULTIBOOL_CASE == 2
template class multibool::BitPlaneMatrix<9, 128>;
#elif MULTIBOOL_CASE == 3
template class multibool::BitPlaneMatrix<2, 128, float, int>;
#elif MULTIBOOL_CASE == 4
template class multibool::BitPlaneMatrix<2, 128, float, float>;
#elif MULTIBOOL_CASE == 5
template class multibool::BitPlaneMatrix<2, 128, int, std::uint64_t>;
#endif
