export { bestMatches } from './best-match';
export type { BestMatch } from './best-match';
export { reportHtml } from './html';
export type { ReportDatasetInfo, ReportInfo, ReportMatrix, ReportModelInfo, ReportResult } from './html';
