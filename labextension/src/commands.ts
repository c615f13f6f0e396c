/** The ids of nbplane's commands, as schema/plugin.json's menu and cell toolbar name them. */
export namespace CommandIDs {
  export const createJob = 'nbplane:create-job';
  export const runJob = 'nbplane:run-job';
  export const resume = 'nbplane:resume';
  export const deploy = 'nbplane:deploy';
  export const execute = 'nbplane:execute';
  export const jobs = 'nbplane:jobs';
  export const details = 'nbplane:job-details';
  export const download = 'nbplane:download';
  export const remove = 'nbplane:delete';
  export const login = 'nbplane:login';
  export const logout = 'nbplane:logout';
  export const help = 'nbplane:help';
  export const toggleStep = 'nbplane:toggle-step';
  export const goToFailingCell = 'nbplane:go-to-failing-cell';
  export const jobsPage = 'nbplane:jobs-page';
  export const createJobHere = 'nbplane:create-job-from-file-browser';
  export const createJobFromNotebook = 'nbplane:create-job-from-notebook';
  export const convertJob = 'nbplane:convert-job-to-notebook';
}
